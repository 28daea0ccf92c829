"""The prompt the policy sees for a problem: one `PromptFormat` for warm start, rollout and
evaluation alike.

Two styles (`prompt.style` in the config; "auto" is chat when the tokenizer has a chat
template, plain otherwise):
- chat: the model's own chat template around one user message, the problem followed by an
  instruction (DeepScaleR's by default, the data TP-GRPO trains on: reason step by step and put
  the final answer in \\boxed{}), ending where the assistant's reply begins;
- plain: a template with `{problem}`, the whole prompt; the default is the tiny model's.

Prompts travel as text and are encoded without special tokens (a chat template writes its own),
so a plain prompt starts with whatever special tokens the tokenizer would put first (BOS).
The tiny model reads characters and its warm start is cached by this file's source: the plain
default must stay what the cached checkpoints were trained on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

PROMPT_TEMPLATE = "Problem: {problem}\nSolution:\n"
BOXED_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
STYLES = ("auto", "chat", "plain")


def check_template(template: str) -> str:
    if "{problem}" not in template:
        raise ValueError("a prompt template must contain {problem} where the problem goes")
    return template


class PromptFormat:
    """`PromptFormat(tokenizer, style=..., ...)(problem)` → the prompt text."""

    def __init__(self, tokenizer: Any = None, style: str = "auto", template: str = PROMPT_TEMPLATE,
                 instruction: str | None = BOXED_INSTRUCTION, system: str | None = None):
        if style not in STYLES:
            raise ValueError(f"prompt.style must be one of {STYLES}, got {style!r}")
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if style == "chat" and not has_chat:
            name = getattr(tokenizer, "name_or_path", None) or "the tokenizer"
            raise ValueError(f"prompt.style is 'chat' but {name} has no chat template; "
                             "use 'plain' (prompt.template) or 'auto'")
        self.style = "chat" if has_chat and style != "plain" else "plain"
        self.tokenizer, self.template = tokenizer, check_template(template)
        self.instruction, self.system = instruction, system
        self._lead = _leading_special_tokens(tokenizer) if self.style == "plain" else ""

    @classmethod
    def for_model(cls, model_dir: str | Path, **settings: Any) -> "PromptFormat":
        from transformers import AutoTokenizer
        return cls(AutoTokenizer.from_pretrained(str(model_dir)), **settings)

    def __call__(self, problem: str) -> str:
        problem = problem.strip()
        if self.style == "plain":
            # replace, not str.format: a template may hold other braces (\boxed{}).
            return self._lead + self.template.replace("{problem}", problem)
        user = f"{problem} {self.instruction}" if self.instruction else problem
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": user})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _leading_special_tokens(tokenizer: Any) -> str:
    """The special tokens (as text) the tokenizer puts before any text, e.g. a BOS."""
    if tokenizer is None:
        return ""
    special = set(tokenizer.all_special_ids)
    lead = []
    for token_id in tokenizer.encode("a", add_special_tokens=True):
        if token_id not in special:
            break
        lead.append(token_id)
    return "".join(tokenizer.convert_ids_to_tokens(lead))


# The tiny model's prompt (plain, no tokenizer needed): benchmarks and quick checks use it.
format_prompt = PromptFormat()
