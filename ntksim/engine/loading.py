"""A config file to a study's validated config: read the YAML, apply `--set` overrides, choose
the study its `study:` key names, validate with that study's model (ConfigError, one line, on any
mistake) and run its installation check."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ntksim.engine.config import DEFAULT_STUDY, ConfigError, format_error, read_yaml
from ntksim.engine.study import Study, UnknownStudy, load_study


def requested_study(raw: Any) -> Study[Any, Any]:
    """The study a raw config mapping asks for (its `study:` key); ConfigError if unknown."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of keys at the top level, got {type(raw).__name__}")
    name = raw.get("study", DEFAULT_STUDY)
    if not isinstance(name, str):
        raise ConfigError(f"study: must be a study name, got {name!r}")
    try:
        return load_study(name)
    except UnknownStudy as err:
        raise ConfigError(f"study: {err}") from None


def validate(raw: Any) -> Any:
    """Typed config of the study `raw` names, from a mapping; ConfigError (one line) on any mistake."""
    study = requested_study(raw)
    try:
        config = study.config.model_validate(raw)
        # pydantic validates only the values given, not the defaults: a second pass over the dump
        # puts those in the canonical form (sorted, deduplicated) that a resumed run reads back
        # from config.yaml, so a key left out resolves the same way every time.
        return study.config.model_validate(config.model_dump(mode="json"))
    except ValidationError as err:
        raise ConfigError(format_error(err)) from None


def _field_exists(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    # A section may be optional (`FiniteConfig | None`): look into every model of the union.
    members = typing.get_args(field.annotation) or (field.annotation,)
    return any(
        isinstance(inner, type) and issubclass(inner, BaseModel) and _field_exists(inner, parts[1:])
        for inner in members
    )


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `KEY=VALUE` overrides (dotted keys, YAML values) to a copy of `raw`; the keys are
    those of the study the config (after a `--set study=…`, if any) names."""
    out = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for item in overrides:  # the study first: it decides which keys exist
        key, _, text = item.partition("=")
        if key.strip() == "study":
            try:
                out["study"] = yaml.safe_load(text) if text else text
            except yaml.YAMLError:
                raise ConfigError(f"--set study: value {text!r} is not valid YAML") from None
    model = requested_study(out).config
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        parts = key.split(".")
        if not _field_exists(model, parts):
            raise ConfigError(f"--set {key}: no such config key")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML") from None
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def load(path: str | Path, overrides: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Validated config and the resolved mapping (every default filled in) to write beside results.

    Also runs the study's installation check (a stored config is not re-checked, so a run made in
    the reference profile can be inspected from the current one)."""
    raw = apply_overrides(read_yaml(path), overrides or [])
    config = validate(raw)
    config.check_installation()
    return config, config.model_dump(mode="json", exclude_none=True)
