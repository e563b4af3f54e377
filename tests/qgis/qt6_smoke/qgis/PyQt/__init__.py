"""Stand-in for QGIS 4's ``qgis.PyQt``: each ``qgis.PyQt.<Module>`` is PyQt6's module of that
name, with what QGIS 4's shim adds to it (QGIS's python/PyQt/PyQt/*.py.in, built for Qt 6).

What QGIS 4 adds, reproduced here:

- ``QtWidgets`` also offers ``QAction``, ``QActionGroup`` and ``QShortcut``, which Qt 6 moved to
  ``QtGui`` (QGIS keeps them importable from both, for plugins that run on QGIS 3 and 4);
  ``QLayout.setMargin(m)`` sets the four contents margins.
- ``QtCore.NULL`` is None; ``QVariant.Int``, ``QVariant.Double``… are the ``QMetaType.Type``
  members; ``QMetaType.Type`` and ``Qt.CheckState`` compare equal to ints and convert to them.
- The flag types PyQt6 dropped (``Qt.Alignment``, ``Qt.ItemFlags``, ``QDialogButtonBox
  .StandardButtons``…) exist again, each a function that makes its enum from an int.

Left out, as they change only how values print or compare a QVariant the plugin never makes:
the ``repr`` of QVariant and QColor and QVariant's NULL-aware comparisons. Nothing else is
added: an unscoped enum (``Qt.AlignLeft``) or a Qt 5-only name (``exec_``, ``QRegExp``,
``QDesktopWidget``) fails here as it fails on QGIS 4.

PyQt6 is imported through ``importlib`` only, so that the readiness check
(test_qt6_readiness.py), which resolves ``from PyQt… import`` statements inside the QGIS 3
test process, never loads PyQt6 next to PyQt5.
"""

from __future__ import annotations

import enum
import importlib
import importlib.abc
import importlib.util
import sys

# The modules QGIS 4's shim offers that PyQt6 can have (QtWebKit and Qsci it has not).
MODULES = (
    "QtCore",
    "QtGui",
    "QtWidgets",
    "QtSvg",
    "QtSvgWidgets",
    "QtNetwork",
    "QtPrintSupport",
    "QtSql",
    "QtTest",
    "QtXml",
    "QtMultimedia",
    "QtQuick",
    "QtQuickWidgets",
    "QtSerialPort",
    "QtWebChannel",
    "QtWebSockets",
    "sip",
    "uic",
)

# Flag types PyQt6 dropped that QGIS 4's shim puts back: "Owner.Flags=Enum" (Flags(int) is
# Owner.Enum(int)). Each module's list as in its shim.
FLAG_TYPES = {
    "QtCore": """
        QAbstractItemModel.CheckIndexOptions=CheckIndexOption QByteArray.Base64Options=Base64Option
        QCommandLineOption.Flags=Flag QDir.Filters=Filter QDir.SortFlags=SortFlag
        QDirIterator.IteratorFlags=IteratorFlag QEventLoop.ProcessEventsFlags=ProcessEventsFlag
        QFileDevice.FileHandleFlags=FileHandleFlag QFileDevice.MemoryMapFlags=MemoryMapFlag
        QFileDevice.Permissions=Permission QItemSelectionModel.SelectionFlags=SelectionFlag
        QLibrary.LoadHints=LoadHint QLocale.DataSizeFormats=DataSizeFormat
        QLocale.NumberOptions=NumberOption QMetaType.TypeFlags=TypeFlag
        QRegularExpression.MatchOptions=MatchOption
        QRegularExpression.PatternOptions=PatternOption QStandardPaths.LocateOptions=LocateOption
        QTextBoundaryFinder.BoundaryReasons=BoundaryReason QTextStream.NumberFlags=NumberFlag
        QUrl.ComponentFormattingOptions=ComponentFormattingOption
        QUrl.FormattingOptions=UrlFormattingOption
        QUrl.UserInputResolutionOptions=UserInputResolutionOption Qt.Alignment=AlignmentFlag
        Qt.ApplicationStates=ApplicationState Qt.DockWidgetAreas=DockWidgetArea
        Qt.DropActions=DropAction Qt.Edges=Edge Qt.FindChildOptions=FindChildOption
        Qt.GestureFlags=GestureFlag Qt.ImageConversionFlags=ImageConversionFlag
        Qt.InputMethodHints=InputMethodHint Qt.InputMethodQueries=InputMethodQuery
        Qt.ItemFlags=ItemFlag Qt.KeyboardModifiers=KeyboardModifier Qt.MatchFlags=MatchFlag
        Qt.MouseButtons=MouseButton Qt.MouseEventFlags=MouseEventFlag Qt.Orientations=Orientation
        Qt.ScreenOrientations=ScreenOrientation Qt.TextInteractionFlags=TextInteractionFlag
        Qt.ToolBarAreas=ToolBarArea Qt.TouchPointStates=TouchPointState
        Qt.WindowStates=WindowState Qt.WindowFlags=WindowType
    """,
    "QtGui": """
        QFileSystemModel.Options=Option QGlyphRun.GlyphRunFlags=GlyphRunFlag
        QImageIOHandler.Transformations=Transformation QPaintEngine.DirtyFlags=DirtyFlag
        QPaintEngine.PaintEngineFeatures=PaintEngineFeature
        QPainter.PixmapFragmentHints=PixmapFragmentHint QPainter.RenderHints=RenderHint
        QRawFont.LayoutFlags=LayoutFlag QSurfaceFormat.FormatOptions=FormatOption
        QTextFormat.PageBreakFlags=PageBreakFlag QTextDocument.FindFlags=FindFlag
        QTextDocument.MarkdownFeatures=MarkdownFeature QTextItem.RenderFlags=RenderFlag
        QTextOption.Flags=Flag
    """,
    "QtWidgets": """
        QWidget.RenderFlags=RenderFlag QGraphicsItem.GraphicsItemFlags=GraphicsItemFlag
        QAbstractItemView.EditTriggers=EditTrigger QAbstractSpinBox.StepEnabled=StepEnabledFlag
        QColorDialog.ColorDialogOptions=ColorDialogOption QStyle.State=StateFlag
        QStyle.SubControls=SubControl QDateTimeEdit.Sections=Section
        QDialogButtonBox.StandardButtons=StandardButton
        QDockWidget.DockWidgetFeatures=DockWidgetFeature QFileDialog.Options=Option
        QFontComboBox.FontFilters=FontFilter QFontDialog.FontDialogOptions=FontDialogOption
        QGestureRecognizer.Result=ResultFlag QGraphicsEffect.ChangeFlags=ChangeFlag
        QGraphicsBlurEffect.BlurHints=BlurHint QGraphicsScene.SceneLayers=SceneLayer
        QGraphicsView.CacheMode=CacheModeFlag QGraphicsView.OptimizationFlags=OptimizationFlag
        QInputDialog.InputDialogOptions=InputDialogOption QMainWindow.DockOptions=DockOption
        QMdiArea.AreaOptions=AreaOption QMdiSubWindow.SubWindowOptions=SubWindowOption
        QMessageBox.StandardButtons=StandardButton QPinchGesture.ChangeFlags=ChangeFlag
        QSizePolicy.ControlTypes=ControlType QStyleOptionButton.ButtonFeatures=ButtonFeature
        QStyleOptionFrame.FrameFeatures=FrameFeature QStyleOptionTab.CornerWidgets=CornerWidget
        QStyleOptionTab.TabFeatures=TabFeature QStyleOptionToolBar.ToolBarFeatures=ToolBarFeature
        QStyleOptionToolButton.ToolButtonFeatures=ToolButtonFeature
        QStyleOptionViewItem.ViewItemFeatures=ViewItemFeature
        QTextEdit.AutoFormatting=AutoFormattingFlag
        QTreeWidgetItemIterator.IteratorFlags=IteratorFlag QWizard.WizardOptions=WizardOption
    """,
}

# QVariant.<name> is QMetaType.Type.Q<name>, except these.
VARIANT_TYPES = {
    "Invalid": "UnknownType",
    "Bool": "Bool",
    "Int": "Int",
    "UInt": "UInt",
    "LongLong": "LongLong",
    "ULongLong": "ULongLong",
    "Double": "Double",
    "Map": "QVariantMap",
    "List": "QVariantList",
    "Hash": "QVariantHash",
    "LastCoreType": "LastCoreType",
    "UserType": "User",
}
VARIANT_Q_TYPES = """Char String StringList ByteArray BitArray Date Time DateTime Url Locale Rect
    RectF Size SizeF Line LineF Point PointF RegularExpression EasingCurve Uuid ModelIndex
    PersistentModelIndex Font Pixmap Brush Color Palette Image Polygon Region Bitmap Cursor
    KeySequence Pen TextLength TextFormat Transform Matrix4x4 Vector2D Vector3D Vector4D
    Quaternion PolygonF Icon SizePolicy"""


def _put_back_flag_types(module) -> None:
    for entry in FLAG_TYPES.get(module.__name__.rpartition(".")[2], "").split():
        owner_name, _, enum_name = entry.partition("=")
        owner_name, _, alias = owner_name.partition(".")
        owner = getattr(module, owner_name, None)
        kind = getattr(owner, enum_name, None)
        if kind is not None:
            setattr(owner, alias, lambda flags=0, kind=kind: kind(flags))


def _as_int(value):
    return int(value.value) if isinstance(value, enum.Enum) else value


def _core(module) -> None:
    module.NULL = None
    types = module.QMetaType.Type
    for name, type_name in VARIANT_TYPES.items():
        setattr(module.QVariant, name, getattr(types, type_name))
    for name in VARIANT_Q_TYPES.split():
        setattr(module.QVariant, name, getattr(types, f"Q{name}"))
    for kind in (types, module.Qt.CheckState):
        kind.__int__ = _as_int
        kind.__eq__ = lambda left, right: _as_int(left) == _as_int(right)


def _widgets(module) -> None:
    gui = importlib.import_module("PyQt6.QtGui")
    module.QAction, module.QActionGroup = gui.QAction, gui.QActionGroup
    module.QShortcut = gui.QShortcut
    module.QLayout.setMargin = lambda layout, margin: layout.setContentsMargins(
        margin, margin, margin, margin
    )


ADDITIONS = {"QtCore": _core, "QtWidgets": _widgets}


class _Shim(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``qgis.PyQt.<Module>``: PyQt6's module's public names, plus QGIS 4's additions."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        name = module.__name__.rpartition(".")[2]
        qt = importlib.import_module(f"PyQt6.{name}")
        module.__dict__.update({k: v for k, v in vars(qt).items() if not k.startswith("_")})
        ADDITIONS.get(name, lambda module: None)(module)
        _put_back_flag_types(module)


sys.meta_path.insert(0, _Shim())
