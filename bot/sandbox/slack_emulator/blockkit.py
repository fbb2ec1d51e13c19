"""Block Kit validation for message `blocks` and modal `view`s, the way Slack rejects them.

Two layers, each reporting a problem once:

1. **slack_sdk's models.** Every block is parsed with `slack_sdk.models.blocks.Block.parse`,
   its child elements and text objects are validated one by one (`to_dict()`, which runs the
   `@JsonValidator`s recursively), then the block's own validators (`validate_json()`); a view
   goes through `slack_sdk.models.views.View`. In slack_sdk 3.47 these already enforce:
   section text <= 3000 and <= 10 fields, header text <= 150, context <= 10 elements,
   actions <= 25 elements, `block_id` <= 255, `action_id` <= 255, button `value` <= 2000 and
   text <= 75, modal title <= 24, 1..100 blocks in a view, `private_metadata` <= 3000.
2. **What the models do not check** (added here): <= 50 blocks in a message; each section
   field <= 2000 characters; `block_id` unique within the message or view; `action_id`
   unique within the message or view; unknown block types, unknown element types and unknown
   top-level block fields (the models skip or ignore them silently); empty text objects
   (Slack: "must be more than 0 characters"); a bare string where Slack needs a text object
   (the models coerce it); `plain_text` where Slack requires it (header, button, input label
   and hint, placeholders, modal title/submit/close); a modal with input blocks but no
   `submit`.

Problems carry a JSON pointer and render like Slack's own messages:
`[ERROR] blocks[3] (section): fields[1] is 2104 characters; the limit is 2000 [json-pointer:/blocks/3/fields/1/text]`.
All functions are pure: they never mutate their input.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_MAX_BLOCKS = 50
MODAL_MAX_BLOCKS = 100  # enforced by slack_sdk's View model; kept for reference and callers
SECTION_FIELD_MAX_CHARS = 2000
MESSAGE_TEXT_MAX_CHARS = 40_000
MAX_REPORTED_PROBLEMS = 20

_TEXT_TYPES = ("plain_text", "mrkdwn")
_MODEL_ERRORS = (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError)
# Attributes of a parsed block that hold child objects validated individually (raw key == attribute).
_CHILD_SLOTS = ("text", "fields", "accessory", "elements", "element", "label", "hint")
# Element slots of a raw block whose entries are interactive/visual elements.
_ELEMENT_SLOTS = ("elements", "accessory", "element")


@dataclass(frozen=True)
class Problem:
    """One violation: where (a JSON pointer into the request) and what, naming the limit."""

    pointer: str
    message: str

    def render(self) -> str:
        """The string Slack puts in `response_metadata.messages` / `errors`."""
        return f"[ERROR] {self.message} [json-pointer:{self.pointer}]"


@dataclass
class _Surface:
    """Accumulates problems for one message or view, with the ids seen so far (uniqueness)."""

    problems: list[Problem] = field(default_factory=list)
    block_ids: dict[str, str] = field(default_factory=dict)
    action_ids: dict[str, str] = field(default_factory=dict)

    def add(self, pointer: str, message: str) -> None:
        self.problems.append(Problem(pointer, message))

    def result(self) -> list[Problem]:
        if len(self.problems) <= MAX_REPORTED_PROBLEMS:
            return list(self.problems)
        extra = len(self.problems) - MAX_REPORTED_PROBLEMS
        return [*self.problems[:MAX_REPORTED_PROBLEMS], Problem("", f"... and {extra} more problems")]


def check_message_blocks(blocks: list[Any], *, pointer: str = "/blocks",
                         max_blocks: int | None = MESSAGE_MAX_BLOCKS) -> list[Problem]:
    """Problems in a message's `blocks` array (empty when Slack would accept it)."""
    surface = _Surface()
    _check_block_list(blocks, pointer, max_blocks, "message", surface)
    return surface.result()


def check_view(view: Any, *, pointer: str = "/view") -> list[Problem]:
    """Problems in a `view` for views.open / views.update (empty when Slack would accept it)."""
    surface = _Surface()
    if not isinstance(view, dict):
        surface.add(pointer, f"view must be a JSON object, got {type(view).__name__}")
        return surface.result()
    vtype = view.get("type")
    if vtype not in ("modal", "home"):
        surface.add(f"{pointer}/type", f"view type must be 'modal' or 'home', got {vtype!r}")
    for key in ("title", "submit", "close"):
        if key in view:
            _require_text_object(view[key], f"{pointer}/{key}", f"view {key}", surface, plain_only=True)
    if vtype == "modal" and "title" not in view:
        surface.add(f"{pointer}/title", "missing required field: title (a modal needs a plain_text title)")
    if "private_metadata" in view and not isinstance(view["private_metadata"], str):
        surface.add(f"{pointer}/private_metadata", "private_metadata must be a string")
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        surface.add(f"{pointer}/blocks", "missing required field: blocks (must be an array)")
        return surface.result()
    _check_block_list(blocks, f"{pointer}/blocks", None, "view", surface)
    has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if vtype == "modal" and has_input and "submit" not in view:
        surface.add(f"{pointer}/submit", "a modal with input blocks needs a submit button")
    view_attributes = View.__dict__.get("attributes")
    unknown = sorted(set(view) - set(view_attributes) - {"type"}) if isinstance(view_attributes, set) else []
    if unknown:
        surface.add(pointer, f"view: unknown field(s) {', '.join(unknown)}")
    if not surface.problems:
        try:
            View(**copy.deepcopy(view)).to_dict()
        except _MODEL_ERRORS as exc:
            surface.add(pointer, f"view ({vtype}): {exc} (checked by slack_sdk's View model)")
    return surface.result()


def _check_block_list(blocks: list[Any], pointer: str, max_blocks: int | None, surface_name: str,
                      surface: _Surface) -> None:
    if max_blocks is not None and len(blocks) > max_blocks:
        surface.add(pointer, f"no more than {max_blocks} blocks are allowed in a {surface_name}; "
                             f"got {len(blocks)}")
    for index, raw in enumerate(blocks):
        _check_block(raw, index, f"{pointer}/{index}", surface)


def _check_block(raw: Any, index: int, pointer: str, surface: _Surface) -> None:
    label = f"blocks[{index}]"
    if not isinstance(raw, dict):
        surface.add(pointer, f"{label} must be a JSON object, got {type(raw).__name__}")
        return
    btype = raw.get("type")
    if not isinstance(btype, str) or not btype:
        surface.add(f"{pointer}/type", f"{label}: missing required field: type")
        return
    where = f"{label} ({btype})"
    _check_text_slots(raw, btype, pointer, where, surface)
    for sub_pointer, text_obj in _text_objects(raw, pointer):
        text = text_obj.get("text")
        if not isinstance(text, str):
            surface.add(f"{sub_pointer}/text", f"{where}: a {text_obj['type']} text object needs a string text")
        elif not text:
            surface.add(f"{sub_pointer}/text", f"{where}: empty {text_obj['type']} text; "
                                               "Slack requires at least 1 character")
    _check_with_models(raw, btype, pointer, where, surface)
    if btype == "section" and isinstance(raw.get("fields"), list):
        for j, fld in enumerate(raw["fields"]):
            text = fld.get("text") if isinstance(fld, dict) else None
            if isinstance(text, str) and len(text) > SECTION_FIELD_MAX_CHARS:
                surface.add(f"{pointer}/fields/{j}/text",
                            f"{where}: fields[{j}] is {len(text)} characters; the limit is {SECTION_FIELD_MAX_CHARS}")
    block_id = raw.get("block_id")
    if block_id is not None:
        if not isinstance(block_id, str):
            surface.add(f"{pointer}/block_id", f"{where}: block_id must be a string")
        elif block_id in surface.block_ids:
            surface.add(f"{pointer}/block_id", f"{where}: duplicate block_id {block_id!r} "
                                                f"(already used at {surface.block_ids[block_id]}); "
                                                "block_id must be unique within the message or view")
        else:
            surface.block_ids[block_id] = f"{pointer}/block_id"
    for sub_pointer, action_id in _action_ids(raw, pointer):
        if not isinstance(action_id, str):
            surface.add(sub_pointer, f"{where}: action_id must be a string")
        elif action_id in surface.action_ids:
            surface.add(sub_pointer, f"{where}: duplicate action_id {action_id!r} "
                                     f"(already used at {surface.action_ids[action_id]}); "
                                     "action_id must be unique within the message or view")
        else:
            surface.action_ids[action_id] = sub_pointer


def _check_with_models(raw: dict[str, Any], btype: str, pointer: str, where: str, surface: _Surface) -> None:
    """Parse with slack_sdk and run its validators: children first (precise pointers), then
    the block's own validators, then one recursive pass for anything not covered."""
    try:
        parsed = Block.parse(copy.deepcopy(raw))
    except _MODEL_ERRORS as exc:
        surface.add(pointer, f"{where}: {exc}")
        return
    if parsed is None:
        surface.add(f"{pointer}/type", f"{where}: unsupported block type {btype!r}")
        return
    unknown = sorted(set(raw) - set(parsed.attributes) - {"type"})
    if unknown:
        surface.add(pointer, f"{where}: unknown field(s) {', '.join(unknown)}")
    before = len(surface.problems)
    for slot in _CHILD_SLOTS:
        if slot not in raw:
            continue
        value = getattr(parsed, slot, None)
        raw_value = raw[slot]
        pairs = (list(enumerate(value)) if isinstance(value, list) else [(None, value)])
        for j, child in pairs:
            child_pointer = f"{pointer}/{slot}" if j is None else f"{pointer}/{slot}/{j}"
            raw_child = raw_value[j] if j is not None and isinstance(raw_value, list) else raw_value
            if child is None:
                if slot in _ELEMENT_SLOTS:
                    ctype = raw_child.get("type") if isinstance(raw_child, dict) else None
                    surface.add(child_pointer, f"{where}: unsupported element type {ctype!r}")
                continue
            to_dict = getattr(child, "to_dict", None)
            if callable(to_dict):
                try:
                    to_dict()
                except _MODEL_ERRORS as exc:
                    name = type(child).__name__
                    surface.add(child_pointer, f"{where}: {slot}{'' if j is None else f'[{j}]'}: {exc} "
                                               f"(checked by slack_sdk's {name})")
    if len(surface.problems) > before:
        return
    try:
        parsed.validate_json()
        parsed.to_dict()
    except _MODEL_ERRORS as exc:
        surface.add(pointer, f"{where}: {exc} (checked by slack_sdk's {type(parsed).__name__})")


def _check_text_slots(raw: dict[str, Any], btype: str, pointer: str, where: str, surface: _Surface) -> None:
    """Where Slack needs a text object (not a bare string), and where it must be plain_text."""
    if btype == "section":
        if "text" in raw:
            _require_text_object(raw["text"], f"{pointer}/text", f"{where} text", surface)
        fields = raw.get("fields")
        if isinstance(fields, list):
            for j, fld in enumerate(fields):
                _require_text_object(fld, f"{pointer}/fields/{j}", f"{where} fields[{j}]", surface)
    elif btype == "header":
        _require_text_object(raw.get("text"), f"{pointer}/text", f"{where} text", surface, plain_only=True)
    elif btype == "input":
        _require_text_object(raw.get("label"), f"{pointer}/label", f"{where} label", surface, plain_only=True)
        if "hint" in raw:
            _require_text_object(raw["hint"], f"{pointer}/hint", f"{where} hint", surface, plain_only=True)
    for elem_pointer, elem in _elements(raw, pointer):
        etype = elem.get("type")
        if etype == "button":
            _require_text_object(elem.get("text"), f"{elem_pointer}/text", f"{where} button text", surface,
                                 plain_only=True)
        if "placeholder" in elem:
            _require_text_object(elem["placeholder"], f"{elem_pointer}/placeholder",
                                 f"{where} {etype} placeholder", surface, plain_only=True)


def _require_text_object(value: Any, pointer: str, what: str, surface: _Surface, *,
                         plain_only: bool = False) -> None:
    if value is None:
        return  # absence is the models' business ("text attribute must be specified")
    if not isinstance(value, dict):
        surface.add(pointer, f"{what} must be a text object "
                             f"({{\"type\": \"plain_text\", \"text\": ...}}), not a {type(value).__name__}")
        return
    ttype = value.get("type")
    allowed = ("plain_text",) if plain_only else _TEXT_TYPES
    if ttype not in allowed:
        surface.add(f"{pointer}/type", f"{what} must be of type {' or '.join(allowed)}, got {ttype!r}")


def _elements(raw: dict[str, Any], pointer: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The element dicts directly in a block's element slots, with their pointers."""
    for slot in _ELEMENT_SLOTS:
        value = raw.get(slot)
        if isinstance(value, dict):
            yield f"{pointer}/{slot}", value
        elif isinstance(value, list):
            for j, item in enumerate(value):
                if isinstance(item, dict):
                    yield f"{pointer}/{slot}/{j}", item


def _text_objects(node: Any, pointer: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every plain_text / mrkdwn object anywhere below `node` (depth-first, document order)."""
    if isinstance(node, dict):
        if node.get("type") in _TEXT_TYPES and "text" in node:
            yield pointer, node
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                yield from _text_objects(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for j, item in enumerate(node):
            yield from _text_objects(item, f"{pointer}/{j}")


def _action_ids(node: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """Every `action_id` below `node`, with its pointer."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "action_id":
                yield f"{pointer}/action_id", value
            elif isinstance(value, (dict, list)):
                yield from _action_ids(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for j, item in enumerate(node):
            yield from _action_ids(item, f"{pointer}/{j}")
