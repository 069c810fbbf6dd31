"""A matplotlib figure in a dock, drawn off the GUI thread.

The figure is a plain :class:`matplotlib.figure.Figure` on the Agg backend (attached
neither to pyplot nor to a Qt canvas), built and rasterised in a worker
(:func:`~mpi_viewer.plugins._work.start_work`); the GUI thread only paints the finished
RGBA image (a ``QPixmap`` at the screen's device-pixel ratio, so it is as sharp and
its text as large as a Qt canvas would draw it). Drawing the calibration plot with
constrained layout costs 100–150 ms; on the GUI thread that froze the window at every
fit and every session open. When the dock is resized the plot is drawn again at the new
size, in a worker, once the resizing has paused (:data:`RESIZE_DEBOUNCE_MS`); until then
the last image is shown, scaled.

matplotlib is imported only when something is drawn, so opening the docks stays
light (see ``tests/test_plugin_gui.py::test_plugin_start_up_adds_no_scipy_or_simpleitk``).
"""

from __future__ import annotations

import threading

import numpy as np
from qtpy.QtCore import QRectF, QTimer, Signal
from qtpy.QtGui import QImage, QPainter, QPixmap
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

#: Points per inch of the figure at a device-pixel ratio of 1 (the size of its text).
DPI = 90
#: Wait this long after the last resize before drawing the plot again at the new size.
RESIZE_DEBOUNCE_MS = 150
#: The figure's background: napari's dark theme.
FACE = "#262930"

# matplotlib's text rendering (the font cache) is not thread-safe: one figure at a time
_DRAW_LOCK = threading.Lock()


def _unit(label: str) -> str:
    """``"total signal (a.u.·mm³)"`` → ``"(a.u.·mm³)"``."""
    i = label.rfind("(")
    return label[i:] if i >= 0 else ""


def render_rgba(draw, width_px: int, height_px: int, dpr: float = 1.0):
    """Draw a figure of ``width_px`` × ``height_px`` logical pixels with ``draw(fig)`` on
    the Agg backend; the figure and its RGBA pixels (``(h·dpr, w·dpr, 4)`` uint8).

    Safe to call from a worker thread: no pyplot, no Qt.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = DPI * dpr
    with _DRAW_LOCK:
        fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=dpi, layout="constrained")
        fig.patch.set_facecolor(FACE)
        canvas = FigureCanvasAgg(fig)
        draw(fig)
        canvas.draw()
        rgba = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
        # the pixel buffer is copied: the figure kept (for its axes) holds no renderer, so a
        # figure that ends in an uncollected cycle (the collector's frozen objects, see
        # plugins/_warm_up.py) keeps kilobytes, not the megabytes of its pixels
        canvas.renderer, canvas._lastKey = None, None
    return fig, rgba


def draw_calibration(
    fig,
    x,
    y,
    *,
    line_x,
    line_y,
    band_lo=None,
    band_hi=None,
    residuals=None,
    names=None,
    roi_x=None,
    roi_y=None,
    roi_names=None,
    x_label="iron (µg Fe)",
    y_label="total signal (a.u.·mm³)",
    title: str = "",
) -> None:
    """Phantoms, fitted line, prediction band and (optionally) residuals and ROIs in ``fig``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Drawn into (cleared first).
    x, y : array_like
        Phantoms: known amount (µg Fe or cells) and measured signal (a.u.·mm³).
    line_x, line_y : array_like
        The fitted line, sampled.
    band_lo, band_hi : array_like, optional
        Prediction band at ``line_x`` (same unit as ``y``).
    residuals : array_like, optional
        ``y − fit(x)`` per phantom; drawn in a panel below.
    names : sequence of str, optional
        Phantom names, written beside the points.
    roi_x, roi_y : array_like, optional
        ROIs placed on the line (estimated amount, measured signal).
    """
    fig.clear()
    fg = "#e6e6e6"
    if residuals is not None:
        ax, axr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax, axr = fig.subplots(1, 1), None
    for a in (ax, axr):
        if a is None:
            continue
        a.set_facecolor("#1e1f24")
        a.tick_params(colors=fg, labelsize=8)
        for s in a.spines.values():
            s.set_color("#888888")
        a.grid(True, color="#444444", lw=0.5)
    if band_lo is not None and band_hi is not None:
        ax.fill_between(
            line_x,
            band_lo,
            band_hi,
            color="#4c8bf5",
            alpha=0.25,
            lw=0,
            label="95 % prediction band",
        )
    ax.plot(line_x, line_y, color="#4c8bf5", lw=1.5, label="fit")
    ax.plot(x, y, "o", color="#ffb000", ms=6, label="phantoms")
    if names is not None and len(names) <= 4:  # more would crowd the low end; the table names them
        for xi, yi, n in zip(x, y, names, strict=False):
            ax.annotate(
                str(n),
                (xi, yi),
                xytext=(4, -10),
                textcoords="offset points",
                fontsize=7,
                color=fg,
            )
    if roi_x is not None and len(roi_x):
        ax.plot(roi_x, roi_y, "s", color="#ff4040", ms=5, mfc="none", label="ROIs")
        for xi, yi, n in zip(roi_x, roi_y, roi_names or [], strict=False):
            ax.annotate(
                str(n),
                (xi, yi),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color="#ff8080",
            )
    ax.set_ylabel(y_label, color=fg, fontsize=9)
    if title:
        ax.set_title(title, color=fg, fontsize=9)
    leg = ax.legend(fontsize=7, loc="upper left", facecolor=FACE, edgecolor="#888888")
    for t in leg.get_texts():
        t.set_color(fg)
    if axr is not None:
        axr.axhline(0.0, color="#4c8bf5", lw=1)
        axr.plot(x, residuals, "o", color="#ffb000", ms=5)
        axr.set_ylabel(f"residual\n{_unit(y_label)}", color=fg, fontsize=8)
        axr.set_xlabel(x_label, color=fg, fontsize=9)
        r = np.asarray(residuals, dtype=float)
        lim = float(np.nanmax(np.abs(r))) * 1.3 if r.size and np.isfinite(r).any() else 1.0
        axr.set_ylim(-lim or -1.0, lim or 1.0)
    else:
        ax.set_xlabel(x_label, color=fg, fontsize=9)


class PlotPanel(QWidget):
    """A placeholder label, then the last plot drawn (an image painted at the panel's size).

    Parameters
    ----------
    placeholder : str
        Text shown until something is plotted.
    height_px : int
        Minimum height of the figure in the dock.

    Attributes
    ----------
    figure : matplotlib.figure.Figure or None
        The figure of the image shown (Agg; read it, do not draw it again).
    rendered : Signal
        Emitted on the GUI thread each time a new image is shown.
    """

    rendered = Signal()

    def __init__(self, placeholder: str = "No plot yet.", *, height_px: int = 360, parent=None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._placeholder = QLabel(placeholder)
        self._placeholder.setWordWrap(True)
        self._layout.addWidget(self._placeholder)
        self._height_px = height_px
        self.figure = None
        self.pixmap: QPixmap | None = None
        self._draw = None  # draw(fig) of the current plot; None: nothing to show
        self._asked = 0  # renders asked for; only the newest is shown
        self._shown_size: tuple[int, int, float] | None = None
        self._worker = None
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(RESIZE_DEBOUNCE_MS)
        self._resize_timer.timeout.connect(self._rerender_if_resized)

    # -- what is shown ---------------------------------------------------------------------
    def clear(self, message: str | None = None) -> None:
        self._asked += 1  # a render under way is not shown
        self._draw, self.figure, self.pixmap = None, None, None
        if message is not None:
            self._placeholder.setText(message)
        self._placeholder.show()
        self.update()

    def plot_calibration(self, x, y, *, block: bool = False, **kwargs) -> None:
        """:func:`draw_calibration` of these arguments, drawn in a worker (``block``:
        here and now) and shown when done."""
        self._set_draw(lambda fig: draw_calibration(fig, x, y, **kwargs), block=block)

    def _set_draw(self, draw, *, block: bool) -> None:
        self._draw = draw
        self.setMinimumHeight(self._height_px)
        self._render(block=block)

    def _target_size(self) -> tuple[int, int, float]:
        w = self.width() if self.isVisible() or self.width() > 100 else 400
        h = max(self.height(), self._height_px)
        return max(int(w), 200), int(h), float(self.devicePixelRatioF() or 1.0)

    def _render(self, *, block: bool = False) -> None:
        from mpi_viewer.plugins._work import start_work

        if self._draw is None:
            return
        self._asked += 1
        ticket, draw = self._asked, self._draw
        w, h, dpr = size = self._target_size()

        def work():
            return render_rgba(draw, w, h, dpr)

        def done(result):
            if ticket != self._asked:  # a newer plot (or size) was asked for meanwhile
                return
            fig, rgba = result
            ih, iw = rgba.shape[:2]
            img = QImage(rgba.data, iw, ih, 4 * iw, QImage.Format.Format_RGBA8888).copy()
            img.setDevicePixelRatio(dpr)
            self.figure, self.pixmap, self._shown_size = fig, QPixmap.fromImage(img), size
            self._placeholder.hide()
            self.update()
            self.rendered.emit()

        self._worker = start_work(work, on_done=done, desc=None, block=block)

    def _rerender_if_resized(self) -> None:
        if self._draw is not None and self._target_size() != self._shown_size:
            self._render()

    # -- Qt --------------------------------------------------------------------------------
    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._draw is not None:
            self._resize_timer.start()  # debounced: drawn again once the resizing pauses

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._draw is not None:
            self._resize_timer.start()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().paintEvent(event)
        if self.pixmap is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        # at its own size when it matches the panel's; while the panel is being resized (a
        # new image is drawn once it pauses) scaled to fit, its proportions kept
        dpr = self.pixmap.devicePixelRatio() or 1.0
        pw, ph = self.pixmap.width() / dpr, self.pixmap.height() / dpr
        k = min(self.width() / pw, self.height() / ph, 1e9) if pw and ph else 1.0
        if abs(k - 1.0) < 0.02:
            k = 1.0
        p.drawPixmap(QRectF(0, 0, pw * k, ph * k), self.pixmap, QRectF(self.pixmap.rect()))
        p.end()

    def save_png(self, path, dpi: int = 150) -> None:
        """Write the current plot to a PNG at ``dpi`` (white text kept on the dark background)."""
        if self._draw is None:
            raise RuntimeError("nothing plotted yet")
        w, h, _ = self._target_size()
        fig, _ = render_rgba(self._draw, w, h, dpi / DPI)
        fig.savefig(path, dpi=dpi, facecolor=fig.get_facecolor())
