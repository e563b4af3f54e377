"""Menu ▸ Service keys…: give each imagery service's key once, without making an
authentication configuration by hand."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..processing.service_keys import (
    KEYED_SERVICES,
    KeyStoreError,
    forget_key,
    store_key,
    stored_key_id,
)

INTRODUCTION = (
    "Panoramax, KartaView and your own geotagged photos need no key. Mapillary and Google "
    "Street View do: paste yours here once and Fetch panoramas uses it whenever its own key "
    "field is left empty. Keys are kept in QGIS's authentication database, encrypted under its "
    "master password (QGIS asks you to choose one the first time)."
)


class ServiceKeysDialog(QDialog):
    """One box per service that needs a key: the key (never shown back), Save and Forget."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Multimodal Urban Studies: service keys")
        layout = QVBoxLayout(self)
        introduction = QLabel(INTRODUCTION)
        introduction.setWordWrap(True)
        layout.addWidget(introduction)
        self.rows = {}
        for service in KEYED_SERVICES:
            layout.addWidget(self._service_box(service))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(560, self.sizeHint().height())

    def _service_box(self, service) -> QGroupBox:
        box = QGroupBox(service.title)
        form = QFormLayout(box)
        key = QLineEdit()
        key.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow(service.key_label, key)
        secret = None
        if service.secret_label:
            secret = QLineEdit()
            secret.setEchoMode(QLineEdit.EchoMode.Password)
            form.addRow(service.secret_label, secret)
        where = QLabel(f"Get one: <a href='{service.where}'>{service.where}</a>")
        where.setTextFormat(Qt.TextFormat.RichText)
        where.setOpenExternalLinks(True)
        where.setWordWrap(True)
        form.addRow(where)
        status = QLabel()
        status.setWordWrap(True)
        save, forget = QPushButton("Save"), QPushButton("Forget")
        actions = QHBoxLayout()
        actions.addWidget(status, 1)
        actions.addWidget(save)
        actions.addWidget(forget)
        form.addRow(actions)
        row = {"key": key, "secret": secret, "status": status, "forget": forget}
        self.rows[service.source] = row
        save.clicked.connect(lambda _=False, s=service: self.save(s))
        forget.clicked.connect(lambda _=False, s=service: self.forget(s))
        self._show_state(service)
        return box

    def _show_state(self, service, message: str = "") -> None:
        row = self.rows[service.source]
        stored = bool(stored_key_id(service.source))
        row["status"].setText(
            message or ("A key is stored." if stored else "No key stored: it is needed to fetch.")
        )
        row["forget"].setEnabled(stored)
        row["key"].setPlaceholderText("stored: type a new one to replace it" if stored else "")

    def save(self, service) -> None:
        row = self.rows[service.source]
        secret = row["secret"].text() if row["secret"] is not None else ""
        try:
            store_key(service, row["key"].text(), secret)
        except KeyStoreError as exc:
            self._show_state(service, str(exc))
            return
        row["key"].clear()
        if row["secret"] is not None:
            row["secret"].clear()
        self._show_state(service, "Stored. Fetch panoramas will use it.")

    def forget(self, service) -> None:
        try:
            forgotten = forget_key(service.source)
        except KeyStoreError as exc:
            self._show_state(service, str(exc))
            return
        self._show_state(service, "Forgotten." if forgotten else "")
