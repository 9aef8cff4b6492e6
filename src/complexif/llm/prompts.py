"""Prompt templates live in files under ``prompts/``; code only fills named placeholders.

Templates use ``string.Template`` syntax (``$name`` / ``${name}``) so that JSON braces and code in
prompts need no escaping. A template's version is the hash of its text: it is recorded with every
generated record so a changed prompt is visible in the data's lineage.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]

    @property
    def placeholders(self) -> set[str]:
        names = set()
        for match in string.Template.pattern.finditer(self.text):
            name = match.group("named") or match.group("braced")
            if name:
                names.add(name)
        return names

    def render(self, **values: object) -> str:
        missing = self.placeholders - values.keys()
        if missing:
            raise TemplateError(f"prompt {self.name!r}: missing values for {sorted(missing)}")
        extra = values.keys() - self.placeholders
        if extra:
            raise TemplateError(f"prompt {self.name!r}: no placeholder for {sorted(extra)}")
        return string.Template(self.text).substitute({k: str(v) for k, v in values.items()})


def load_template(prompts_dir: str | Path, name: str) -> PromptTemplate:
    path = Path(prompts_dir) / name
    if not path.is_file():
        raise TemplateError(f"prompt template not found: {path}")
    return PromptTemplate(name=name, text=path.read_text(encoding="utf-8"))
