"""kgraft transfer layer: models, data, probes, reports, fine-tuning and the command line."""
