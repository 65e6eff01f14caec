# kgraft with its bundled offline data (Fashion-MNIST, WordNet, Animal-MNIST, ccexam weights).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends dataset-fashion-mnist wordnet-base graphviz \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ontology ontology
COPY kg kg
COPY gnn gnn
COPY transfer transfer
RUN pip install --no-cache-dir ".[serve]" \
 && pip install --no-cache-dir --no-deps animal-mnist==0.4 ccexam==1.0.0
WORKDIR /work
ENTRYPOINT ["kgraft"]
CMD ["--help"]
