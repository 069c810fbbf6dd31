"""The docks laid out as the steps of the work, each fitting in :data:`DOCK_MAX_WIDTH_PX`.

One place decides how the seven docks look together, so that dock files stay about
their own step:

- :data:`STEPS`: the docks in the order of the work, each with a short numbered tab
  title ("1 Geometry" … "7 Session") and a tooltip saying what the step is for. The
  docks stay separate napari dock widgets (the Plugins and Window menus, sessions and
  docks that find each other by name keep working); only what the user reads changes:
  the tab, the title bar ("Step 4 of 7 · MPI ROIs") and the tooltip.
- :func:`fit_width`: a size policy applied to a dock's widgets (combo boxes sized to a
  few characters instead of their longest item, labels that wrap, spin boxes sharing a
  row without ± buttons, long button rows on two lines, tables that scroll), so that
  every dock's ``sizeHint`` fits in :data:`DOCK_MAX_WIDTH_PX` at the default font.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The widest a dock may ask to be (px, default font): a 1600 px window keeps a canvas.
DOCK_MAX_WIDTH_PX = 420


@dataclass(frozen=True)
class Step:
    """One dock as a step of the work."""

    display_name: str  # the manifest's widget display_name
    tab: str  # the short numbered tab title
    tip: str  # what the step is for (tab tooltip)


#: The order of the work: open → geometry → register → ROIs → calibrate → cells →
#: report/session. Registration is one step done one of two ways (2a or 2b).
STEPS = (
    Step("Image geometry", "1 Geometry", "Step 1 (plain arrays only): voxel size, origin, "
         "modality and MPI scan settings of an image read without them"),
    Step("Mold registration", "2a Mold", "Step 2a: draw the MPI on the anatomy from the "
         "mold's fiducial wells, found automatically"),
    Step("Fiducial registration", "2b Fiducials", "Step 2b (instead of 2a): register by "
         "clicking fiducial pairs, or refine by intensity"),
    Step("MPI ROIs", "3 ROIs", "Step 3: click each hot spot to delineate and measure it "
         "on the native MPI grid"),
    Step("Calibration", "4 Calibration", "Step 4: phantoms of known iron → calibration "
         "line → iron per ROI"),
    Step("Cells and report", "5 Cells, report", "Step 5: iron per cell → cell number per ROI, "
         "overlays on the anatomy, the report"),
    Step("Session", "6 Session", "Step 6: save the study (every input and decision) "
         "to replay it"),
)  # fmt: skip

_BY_NAME = {s.display_name: s for s in STEPS}


def step_of(display_name: str) -> tuple[int, Step] | None:
    """(position 1…n, step) of a dock by its manifest display name, None if unknown."""
    for k, s in enumerate(STEPS, start=1):
        if s.display_name == display_name:
            return k, s
    return None


def title_of(display_name: str) -> str:
    """The title bar text of a dock: ``"Step 3 of 6 · MPI ROIs"``."""
    found = step_of(display_name)
    if found is None:
        return display_name
    total = len({s.tab.split()[0].rstrip("ab") for s in STEPS})
    return f"Step {found[1].tab.split()[0]} of {total} · {display_name}"


# -- the size policy -------------------------------------------------------------------------
def fit_width(widget, max_px: int = DOCK_MAX_WIDTH_PX) -> int:
    """Make ``widget`` (a dock) ask for at most ``max_px`` of width; returns its new
    ``sizeHint().width()``.

    Applied to every child, whatever the dock: combo boxes are sized by a few
    characters (long items are shown in the opened list and the tooltip); labels wrap;
    spin boxes sharing a row with another lose their ± buttons (keys and the wheel
    still step them) and share the row evenly; tables scroll instead of asking for their columns' width; form fields too wide go
    under their label;
    tab bars scroll; a row of buttons wider than the dock is split over two lines.
    """
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import (
        QAbstractScrollArea,
        QAbstractSpinBox,
        QApplication,
        QComboBox,
        QFormLayout,
        QHBoxLayout,
        QLabel,
        QTabBar,
    )

    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(10)
        # Qt caches a combo's minimum size hint; a style change recomputes it
        QApplication.sendEvent(combo, QEvent(QEvent.Type.StyleChange))
        _tooltip_follows_text(combo)
    for label in widget.findChildren(QLabel):
        # status lines (empty until something happens) and long texts wrap
        if type(label) is QLabel and not label.wordWrap():
            if not label.text() or label.sizeHint().width() > max_px // 2:
                label.setWordWrap(True)
        if type(label) is QLabel and label.wordWrap():
            take_width_given(label)
    for area in widget.findChildren(QAbstractScrollArea):
        area.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustIgnored)
        if area.minimumWidth() > max_px - 40:
            area.setMinimumWidth(0)
    for bar in widget.findChildren(QTabBar):
        bar.setUsesScrollButtons(True)
    for form in widget.findChildren(QFormLayout):  # a field too wide goes under its label
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setHorizontalSpacing(6)
    layout = widget.layout()
    if layout is not None:
        m = layout.contentsMargins()  # the dock's own frame: 6 px a side is enough
        layout.setContentsMargins(min(m.left(), 6), m.top(), min(m.right(), 6), m.bottom())
        _fit_layout(layout, max_px - 24)
    for row in widget.findChildren(QHBoxLayout):
        spins = [row.itemAt(i).widget() for i in range(row.count())]
        spins = [w for w in spins if isinstance(w, QAbstractSpinBox)]
        if len(spins) > 1:  # share the row evenly, sized by the value shown, not the range
            for spin in spins:
                spin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
                shown = spin.fontMetrics().horizontalAdvance(_typical_text(spin))
                spin.setMinimumWidth(max(56, shown + 6))
                spin.setMaximumWidth(max(64, shown + 14))
    if widget.minimumWidth() > max_px:  # a dock's own fixed minimum wider than the budget
        widget.setMinimumWidth(0)
    # the dock (and napari's wrapper) computed their minimum before: recompute it
    w = widget
    while w is not None and not w.isWindow():
        w.updateGeometry()
        if w.layout() is not None:
            w.layout().invalidate()
            w.layout().activate()
        if w is not widget and w.minimumWidth() > max_px:  # napari's dock kept the old one
            w.setMinimumWidth(50)
            if w.layout() is not None:
                w.layout().activate()
        w = w.parentWidget()
    return int(widget.sizeHint().width())


def _typical_text(spin) -> str:
    """The text of a three-digit value (−999 when negatives are allowed) of a spin box:
    wide enough for what is typed, not for the extremes of its range (1e5 mm…)."""
    lo = float(spin.minimum()) if hasattr(spin, "minimum") else 0.0
    value = -999.0 if lo < 0 else 999.0
    value = min(max(value, lo), float(spin.maximum()))
    if hasattr(spin, "decimals"):
        text = spin.textFromValue(value)
    else:
        text = spin.textFromValue(int(value))
    return f"{spin.prefix()}{text}{spin.suffix()}"


def take_width_given(label) -> None:
    """A wrapped line of a box layout (status, notes) takes the width the dock has instead
    of asking for the width of its longest paragraph (Qt's guess for wrapped text)."""
    from qtpy.QtWidgets import QBoxLayout, QSizePolicy

    parent = label.parentWidget()
    layout = parent.layout() if parent is not None else None
    if isinstance(layout, QBoxLayout) and layout.indexOf(label) >= 0:
        policy = label.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        label.setSizePolicy(policy)


def _tooltip_follows_text(combo) -> None:
    """A narrowed combo box shows its whole current item as its tooltip."""
    if combo.property("mpi_viewer_tip"):
        return
    combo.setProperty("mpi_viewer_tip", True)
    own = combo.toolTip()

    def tip(_=None) -> None:
        text = combo.currentText()
        combo.setToolTip(f"{text}\n{own}" if own and text else (text or own))

    combo.currentIndexChanged.connect(tip)
    tip()


def _fit_layout(layout, max_px: int) -> None:
    """Split horizontal rows of buttons wider than ``max_px`` over two lines (in place)."""
    from qtpy.QtWidgets import QAbstractButton, QBoxLayout, QGridLayout, QHBoxLayout

    for i in range(layout.count()):
        item = layout.itemAt(i)
        child = item.layout()
        if child is None:
            w = item.widget()
            if (
                w is not None
                and w.layout() is not None
                and type(w).__name__
                in (
                    "QWidget",
                    "QGroupBox",
                    "QFrame",
                )
            ):
                _fit_layout(w.layout(), max_px)
            continue
        widgets = [child.itemAt(k).widget() for k in range(child.count())]
        if (
            isinstance(child, QHBoxLayout)
            and isinstance(layout, QBoxLayout)
            and len(widgets) >= 3
            and all(isinstance(w, QAbstractButton) for w in widgets)
            and child.minimumSize().width() > max_px
        ):
            grid = QGridLayout()
            grid.setContentsMargins(child.contentsMargins())
            cols = math.ceil(len(widgets) / 2)
            for k, w in enumerate(widgets):
                child.removeWidget(w)
                grid.addWidget(w, k // cols, k % cols)
            layout.takeAt(i)
            child.setParent(None)
            layout.insertLayout(i, grid)
        else:
            _fit_layout(child, max_px)


# -- the tabs ------------------------------------------------------------------------------------
def number_docks(main_window, docks_by_name: dict) -> None:
    """Numbered tab titles, tooltips and title bars for the docks (``display name →
    QDockWidget``) in ``main_window``; tabs show whole titles (no eliding)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar

    tips = {}
    for name, dock in docks_by_name.items():
        found = step_of(name)
        if found is None:
            continue
        step = found[1]
        dock.setWindowTitle(step.tab)  # the tab's text
        dock.setToolTip(step.tip)
        tips[step.tab] = step.tip
        bar_title = getattr(getattr(dock, "title", None), "title", None)  # napari's title bar
        if bar_title is not None and hasattr(bar_title, "setText"):
            bar_title.setText(title_of(name))
            bar_title.setToolTip(step.tip)
    from qtpy.QtWidgets import QTabWidget

    main_window.setTabPosition(Qt.DockWidgetArea.RightDockWidgetArea, QTabWidget.TabPosition.West)
    for bar in main_window.findChildren(QTabBar):
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)
        bar.setExpanding(False)
        for k in range(bar.count()):
            tip = tips.get(bar.tabText(k))
            if tip:
                bar.setTabToolTip(k, tip)
