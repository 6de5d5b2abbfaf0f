"""Per-knowledge-base settings, kept in ``kb.yaml`` beside the articles (written by
``deskbot kb tune``), so thresholds travel with the data they were tuned on."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from knowledge_base.models import Problem

SETTINGS_FILE = "kb.yaml"
DEFAULT_ANSWER_THRESHOLD = 0.55
DEFAULT_SUGGEST_THRESHOLD = 0.3
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class KbSettings:
    answer_threshold: float = DEFAULT_ANSWER_THRESHOLD
    suggest_threshold: float = DEFAULT_SUGGEST_THRESHOLD
    # Free-form provenance written by the tuner (what data, which figures); informational only.
    tuned_on: dict[str, Any] | None = None
    # Blend in sentence embeddings (static, shipped with the wordllama package); lexical
    # signals only when False.
    semantic: bool = True
    # Language of articles that do not declare one (`language:` in their front matter).
    language: str = DEFAULT_LANGUAGE

    def with_overrides(
        self,
        *,
        answer_threshold: float | None = None,
        suggest_threshold: float | None = None,
        semantic: bool | None = None,
    ) -> KbSettings:
        answer = self.answer_threshold if answer_threshold is None else answer_threshold
        suggest = self.suggest_threshold if suggest_threshold is None else suggest_threshold
        check_thresholds(answer, suggest)
        return replace(
            self,
            answer_threshold=answer,
            suggest_threshold=suggest,
            semantic=self.semantic if semantic is None else semantic,
        )


def check_thresholds(answer: float, suggest: float) -> None:
    if not (0.0 <= suggest <= answer <= 1.0):
        raise ValueError(
            f"thresholds must satisfy 0 <= suggest ({suggest}) <= answer ({answer}) <= 1"
        )


def read_settings(directory: Path) -> tuple[KbSettings, list[Problem]]:
    """Settings from ``directory/kb.yaml``; defaults (and a problem) when it is unusable."""
    path = directory / SETTINGS_FILE
    if not path.is_file():
        return KbSettings(), []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return KbSettings(), [Problem(path, 0, "not UTF-8 text")]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        return KbSettings(), [Problem(path, line, f"bad YAML: {error}")]
    if data is None:
        return KbSettings(), []
    if not isinstance(data, dict):
        return KbSettings(), [Problem(path, 1, "settings must be a mapping of key: value")]
    try:
        answer = _threshold(data, "answer_threshold", DEFAULT_ANSWER_THRESHOLD)
        suggest = _threshold(data, "suggest_threshold", DEFAULT_SUGGEST_THRESHOLD)
        check_thresholds(answer, suggest)
    except ValueError as error:
        return KbSettings(), [Problem(path, 0, str(error))]
    semantic = data.get("semantic", True)
    if not isinstance(semantic, bool):
        return KbSettings(), [Problem(path, 0, f"semantic must be true or false, got {semantic!r}")]
    language = data.get("language", DEFAULT_LANGUAGE)
    if not isinstance(language, str) or not re.fullmatch(r"[A-Za-z]{2,3}", language.strip()):
        reason = f"language must be a code like en or de, got {language!r}"
        return KbSettings(), [Problem(path, 0, reason)]
    tuned_on = data.get("tuned_on")
    tuned = tuned_on if isinstance(tuned_on, dict) else None
    return KbSettings(answer, suggest, tuned, semantic, language.strip().lower()), []


def _threshold(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number between 0 and 1, got {value!r}")
    return float(value)


def write_settings(directory: Path, settings: KbSettings) -> Path:
    path = directory / SETTINGS_FILE
    data: dict[str, Any] = {
        "answer_threshold": round(settings.answer_threshold, 6),
        "suggest_threshold": round(settings.suggest_threshold, 6),
    }
    if not settings.semantic:
        data["semantic"] = False
    if settings.language != DEFAULT_LANGUAGE:
        data["language"] = settings.language
    if settings.tuned_on:
        data["tuned_on"] = settings.tuned_on
    header = "# Written by `deskbot kb tune`; may be edited (0 <= suggest <= answer <= 1).\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
