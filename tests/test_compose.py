"""docker-compose.yml cannot run here (no Docker engine); check what a user relies on in it."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_wires_kgraft_to_neo4j() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    neo4j = compose["services"]["neo4j"]
    assert neo4j["image"].startswith("neo4j:5.26")
    assert all(port.startswith("127.0.0.1:") for port in neo4j["ports"])  # not exposed beyond localhost
    assert "${NEO4J_PASSWORD" in neo4j["environment"]["NEO4J_AUTH"]  # no password in the file
    assert any(v.startswith("neo4j-data:") for v in neo4j["volumes"])
    kgraft = compose["services"]["kgraft"]
    assert kgraft["environment"]["KGRAFT_STORE"] == "neo4j://neo4j:7687"
    assert kgraft["depends_on"]["neo4j"]["condition"] == "service_healthy"
    assert (ROOT / kgraft["build"] / "Dockerfile").is_file()


def test_compose_runs_the_server_with_a_token_and_a_health_check() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    server = compose["services"]["kgraft-server"]
    assert server["command"][0] == "serve"
    env = server["environment"]
    assert env["KGRAFT_STORE"] == "neo4j://neo4j:7687"
    assert env["KGRAFT_TOKEN"].startswith("${KGRAFT_TOKEN")  # from the environment, not the file
    assert server["depends_on"]["neo4j"]["condition"] == "service_healthy"
    assert all(port.startswith("127.0.0.1:") for port in server["ports"])
    port = server["command"][server["command"].index("--port") + 1]
    assert any(
        port in " ".join(server["healthcheck"]["test"]) and "/api/health" in t
        for t in server["healthcheck"]["test"]
    )
    assert '".[serve]"' in (ROOT / server["build"] / "Dockerfile").read_text()
