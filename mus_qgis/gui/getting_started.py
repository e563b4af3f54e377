"""Menu ▸ Getting started…, also shown once on the first start: what to do first, each step
with its state and the one button that does it (the engine, the model weights, the keys)."""

from __future__ import annotations

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from ..bridge.engine import (
    configured_python,
    default_checkpoint,
    engine_root,
    set_default_checkpoint,
)
from ..bridge.environment import read_current
from ..shared.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED

# Shown on the first start, then only from the menu unless the user ticks "Show at start".
SHOW_AT_START_KEY = "mus_qgis/show_getting_started"

ENGINE_TEXT = (
    "Every algorithm's heavy work runs in an engine of its own, outside QGIS: PyTorch, OpenCLIP, "
    "osmnx, PySAL in an environment the plugin makes and never touches your Python. The set-up "
    "downloads about 1 GB (PyTorch's CPU build; 3.3 GB for the CUDA build on a Linux machine "
    "with an NVIDIA GPU) and takes 3 to 10 minutes, in the background: QGIS stays usable."
)
WEIGHTS_TEXT = (
    f"CLIP-classify uses {DEFAULT_MODEL} with the weights {DEFAULT_PRETRAINED!r} (about 600 MB, "
    "from Hugging Face). They download the first time a classification runs, or now (with a "
    "progress bar in the task bar). Offline or behind a proxy: choose a checkpoint file you "
    "downloaded elsewhere; every CLIP dialog then starts with it. For a first trial without "
    "any download, empty a dialog's 'Pretrained weights tag': random weights run everything, "
    "but the labels then mean nothing (the log says so)."
)
KEYS_TEXT = (
    "Panoramax, KartaView and your own geotagged photos need no key. Mapillary and Google "
    "Street View do: give each once and Fetch panoramas uses it."
)
START_TEXT = (
    "Then: Processing Toolbox ▸ Multimodal Urban Studies: 1 · Sample street centroids, 2 · Fetch "
    "panoramas, 3 · CLIP-classify, 4 · Resample labels to a grid; or the whole study at once with "
    "5 · Pipeline. Each dialog's Help button opens its page."
)


def should_show_at_start() -> bool:
    """True on the first start (nothing recorded yet), then as the user chose."""
    return bool(QgsSettings().value(SHOW_AT_START_KEY, True, type=bool))


def engine_state() -> str:
    """One line: is the engine set up, and with what."""
    python, chosen_by = configured_python()
    if not python:
        return "Now: not set up yet. No algorithm can run until it is."
    current = read_current(engine_root())
    if current and current.get("python") == python:
        build = current.get("torch_label") or current.get("torch_build") or ""
        return f"Now: set up ({build})." if build else "Now: set up."
    return f"Now: uses {python} (from {chosen_by})."


def weights_state() -> str:
    checkpoint = default_checkpoint()
    if checkpoint:
        return f"Now: CLIP dialogs start with the checkpoint file {checkpoint}."
    return f"Now: the weights {DEFAULT_PRETRAINED!r}, downloaded on first use."


class GettingStartedDialog(QDialog):
    """The first steps, each with its state and the button that does it."""

    def __init__(self, plugin, parent=None) -> None:
        super().__init__(parent)
        self.plugin = plugin
        self.setWindowTitle("Multimodal Urban Studies: getting started")
        layout = QVBoxLayout(self)
        self.engine_status = QLabel()
        self.weights_status = QLabel()
        set_up = QPushButton("Set up the engine")
        set_up.clicked.connect(self.set_up_engine)
        layout.addWidget(self._step("1. The engine", ENGINE_TEXT, self.engine_status, [set_up]))
        download = QPushButton("Download now")
        download.clicked.connect(self.download_weights)
        choose = QPushButton("Use a checkpoint file…")
        choose.clicked.connect(self.choose_checkpoint)
        self.forget_checkpoint_button = QPushButton("Forget the file")
        self.forget_checkpoint_button.clicked.connect(self.forget_checkpoint)
        layout.addWidget(
            self._step(
                "2. Model weights",
                WEIGHTS_TEXT,
                self.weights_status,
                [download, choose, self.forget_checkpoint_button],
            )
        )
        keys = QPushButton("Service keys…")
        keys.clicked.connect(self.plugin.show_service_keys)
        layout.addWidget(
            self._step("3. Keys (only for Mapillary or Street View)", KEYS_TEXT, None, [keys])
        )
        start = QLabel(START_TEXT)
        start.setWordWrap(True)
        layout.addWidget(start)
        self.show_at_start = QCheckBox("Show this at start")
        self.show_at_start.setChecked(should_show_at_start())
        self.show_at_start.toggled.connect(
            lambda on: QgsSettings().setValue(SHOW_AT_START_KEY, bool(on))  # noqa: QGS202
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.show_at_start, 1)
        row.addWidget(buttons)
        layout.addLayout(row)
        self.refresh()
        self.resize(620, self.sizeHint().height())

    @staticmethod
    def _step(title: str, text: str, status, actions) -> QGroupBox:
        box = QGroupBox(title)
        column = QVBoxLayout(box)
        words = QLabel(text)
        words.setWordWrap(True)
        column.addWidget(words)
        if status is not None:
            status.setWordWrap(True)
            status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            column.addWidget(status)
        row = QHBoxLayout()
        row.addStretch(1)
        for action in actions:
            row.addWidget(action)
        column.addLayout(row)
        return box

    def refresh(self) -> None:
        self.engine_status.setText(engine_state())
        self.weights_status.setText(weights_state())
        self.forget_checkpoint_button.setEnabled(bool(default_checkpoint()))

    def set_up_engine(self) -> None:
        self.plugin.setup_engine()
        self.engine_status.setText("Setting up in the background (progress in the task bar)…")

    def download_weights(self) -> None:
        self.weights_status.setText("Downloading in the background (progress in the task bar)…")
        self.plugin.download_weights(self.refresh)

    def choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "A CLIP checkpoint file",
            "",
            "Checkpoints (*.safetensors *.bin *.pt *.pth);;All files (*)",
        )
        if path:
            set_default_checkpoint(path)
        self.refresh()

    def forget_checkpoint(self) -> None:
        set_default_checkpoint("")
        self.refresh()
