"""Reading config files: every problem reported as `file: field: reason`, one broken file never hiding the others."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitoring_lib.config.endpoint import EndpointConfig
from monitoring_lib.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
_SECRET_KEYS = re.compile(r"(password|secret|token|api[_-]?key)", re.IGNORECASE)


def _reject_secrets(data: Any, path: str = "") -> list[str]:
    """Config is shared and committed: a key that looks like a secret is an error, not a warning."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if _SECRET_KEYS.search(str(key)):
                found.append(f"{where}: secrets do not belong in config; use an Airflow Connection or env var")
            found += _reject_secrets(value, where)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _reject_secrets(item, f"{path}[{i}]")
    return found


def _format_errors(file: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        reason = err["msg"].removeprefix("Value error, ")
        problems.append(f"{file}: {field}: {reason}")
    return problems


def load_endpoint_config(path: str | Path) -> EndpointConfig:
    """Load and validate one file; every problem is reported as `file: field: reason`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"{path}: (file): cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: (file): not valid YAML: {exc}".replace("\n", " ")]) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: (top level): expected a mapping of settings"])
    secrets = _reject_secrets(data)
    if secrets:
        raise ConfigError([f"{path}: {s}" for s in secrets])
    try:
        return EndpointConfig.model_validate({**data, "source_file": str(path)})
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(path), exc)) from exc


def config_dir() -> Path:
    return Path(os.environ.get("MLMON_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def config_files(directory: str | Path | None = None) -> list[Path]:
    directory = Path(directory) if directory else config_dir()
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def _age_key(file: Path) -> tuple[int, str]:
    """Older first: modification time, then file name when two files share one."""
    return file.stat().st_mtime_ns, file.name


def load_each(directory: str | Path | None = None) -> tuple[dict[str, EndpointConfig], list[str]]:
    """Every valid config by endpoint id, and every problem found, so a user fixes them in one pass.

    An endpoint_id defined in several files keeps the config of the oldest file (modification time, ties
    broken by file name) and reports the others: a copied config whose endpoint_id was not changed is
    newer, so it never takes the running endpoint's DAG away. Parsing may not ask a database which file
    served the endpoint before, so the file's age stands for it.
    """
    directory = Path(directory) if directory else config_dir()
    if not directory.is_dir():
        return {}, [f"{directory}: (directory): config directory does not exist"]
    problems: list[str] = []
    by_id: dict[str, list[EndpointConfig]] = {}
    for file in config_files(directory):
        try:
            cfg = load_endpoint_config(file)
        except ConfigError as exc:
            problems += exc.problems
            continue
        by_id.setdefault(cfg.endpoint_id, []).append(cfg)
    configs: dict[str, EndpointConfig] = {}
    for endpoint_id, defined in by_id.items():
        kept, *others = sorted(defined, key=lambda c: _age_key(Path(c.source_file)))
        configs[endpoint_id] = kept
        problems += [f"{other.source_file}: endpoint_id: '{endpoint_id}' is already defined in the older file "
                     f"{kept.source_file}, which is kept; this file is not used until its endpoint_id is changed"
                     for other in others]
    return configs, problems


def load_all(directory: str | Path | None = None) -> dict[str, EndpointConfig]:
    """Load every file; any problem in any file fails the whole load, listing them all."""
    configs, problems = load_each(directory)
    if problems:
        raise ConfigError(problems)
    return configs


def get_endpoint(endpoint_id: str, directory: str | Path | None = None) -> EndpointConfig:
    """One endpoint's config; a broken file elsewhere in the directory does not stop this endpoint.

    When the endpoint is not found, the directory's problems are listed first: it may be in a broken file.
    """
    configs, problems = load_each(directory)
    if endpoint_id not in configs:
        known = ", ".join(sorted(configs)) or "none"
        raise ConfigError([*problems, f"{config_dir() if directory is None else directory}: endpoint_id: "
                                      f"no valid config for '{endpoint_id}' (valid: {known})"])
    if problems:
        log.warning("config files with problems, not used (run `mlmon validate-config`): %s", "; ".join(problems))
    return configs[endpoint_id]
