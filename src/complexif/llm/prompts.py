"""Prompt templates live in files under ``prompts/``; code only fills named placeholders.

Templates use ``string.Template`` syntax (``$name`` / ``${name}``) so that JSON braces and code in
prompts need no escaping. A template's version is the hash of its text: it is recorded with every
generated record so a changed prompt is visible in the data's lineage.

A template may hold a whole conversation, for few-shot demonstrations (a worked example as an
earlier user turn and the assistant's reply, then the real request): it starts with a marker line
``--- user ---`` and each turn begins with ``--- user ---``, ``--- assistant ---`` or
``--- system ---`` on its own line. Demonstrations in the chat itself teach a small model the
answer's form far better than an example quoted inside one message. Without markers the whole
file is one user turn.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path


class TemplateError(ValueError):
    pass


TURN = re.compile(r"^--- (user|assistant|system) ---[ \t]*$", re.MULTILINE)


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

    def _check(self, values: dict[str, object]) -> dict[str, str]:
        missing = self.placeholders - values.keys()
        if missing:
            raise TemplateError(f"prompt {self.name!r}: missing values for {sorted(missing)}")
        extra = values.keys() - self.placeholders
        if extra:
            raise TemplateError(f"prompt {self.name!r}: no placeholder for {sorted(extra)}")
        return {k: str(v) for k, v in values.items()}

    def render(self, **values: object) -> str:
        return self._substitute(self.text, self._check(values))

    def _substitute(self, text: str, strings: dict[str, str]) -> str:
        try:
            return string.Template(text).substitute(strings)
        except ValueError as exc:  # a "$" that is no placeholder: write "$$" for a dollar
            raise TemplateError(f"prompt {self.name!r}: {exc}") from None

    def render_messages(self, **values: object) -> tuple[dict[str, str], ...]:
        """The rendered conversation: one user turn, or the turns the markers delimit.

        The turns are split before the values go in, so a value that happens to contain a
        marker line stays text inside its turn.
        """
        strings = self._check(values)
        first = TURN.search(self.text)
        if first is None:
            return ({"role": "user", "content": self.render(**values)},)
        if first.start() != 0:
            # Text before the first marker belongs to no turn: without this it would silently
            # make the whole file one user turn, markers and demonstrations included.
            line = self.text.count("\n", 0, first.start()) + 1
            raise TemplateError(
                f"prompt {self.name!r}: line {line}: a template with turn markers must start "
                "with one"
            )
        parts = TURN.split(self.text)[1:]  # [role, body, role, body, ...]
        turns = []
        for i, (role, body) in enumerate(zip(parts[::2], parts[1::2], strict=True), start=1):
            if not body.strip():
                raise TemplateError(f"prompt {self.name!r}: turn {i} ({role}) is empty")
            # As in render(): a stray "$" is an error here too, not passed through.
            content = self._substitute(body.strip("\n"), strings)
            turns.append({"role": role, "content": content})
        if turns[-1]["role"] != "user":
            raise TemplateError(f"prompt {self.name!r}: the last turn must be the user's")
        return tuple(turns)


def load_template(prompts_dir: str | Path, name: str) -> PromptTemplate:
    path = Path(prompts_dir) / name
    if not path.is_file():
        raise TemplateError(f"prompt template not found: {path}")
    return PromptTemplate(name=name, text=path.read_text(encoding="utf-8"))
