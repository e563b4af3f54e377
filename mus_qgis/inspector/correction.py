"""The user's label for a point: a ``label_user`` field, set through the layer's edit buffer.

The probe training (mus:trainprobe) reads the same field: a label's text exactly as in the label
set, empty or NULL for a point not corrected.
"""

from __future__ import annotations

from qgis.core import NULL

from ..bridge.layer_settings import classification_settings
from ..bridge.qgis_enums import make_field
from ..shared.errors import MusError
from ..shared.labels import builtin_label_set

LABEL_USER = "label_user"


def label_choices(layer) -> list[str]:
    """The classes offered: the layer's label set (by its run settings), else the labels the
    layer holds."""
    name = classification_settings(layer).get("label_set")
    if name:
        try:
            return builtin_label_set(name).texts
        except MusError:
            pass  # a label file: its labels are not recorded; the layer's own are offered
    names = layer.fields().names()
    found = set()
    for rank in range(1, 11):
        if f"label_{rank}" in names:
            index = layer.fields().lookupField(f"label_{rank}")
            found |= {v for v in layer.uniqueValues(index) if v and v != NULL}
    return sorted(str(v) for v in found)


def set_user_label(layer, fid: int, label: str | None) -> None:
    """Store ``label`` (None or "" clears it) as one undoable edit; the field is added (also
    undoable) when the layer has none. The layer stays in editing mode: saving is the user's."""
    if not layer.isEditable() and not layer.startEditing():
        raise MusError(f"The layer {layer.name()} cannot be edited, so no label can be stored.")
    layer.beginEditCommand(f"Set {LABEL_USER} of point {fid}")
    try:
        if layer.fields().lookupField(LABEL_USER) < 0 and not layer.addAttribute(
            make_field(LABEL_USER, "string")
        ):
            raise MusError(f"The layer {layer.name()} cannot take a {LABEL_USER} field.")
        index = layer.fields().lookupField(LABEL_USER)
        if not layer.changeAttributeValue(fid, index, label or NULL):
            raise MusError(f"The label of point {fid} could not be set.")
    except BaseException:
        layer.destroyEditCommand()
        raise
    layer.endEditCommand()
