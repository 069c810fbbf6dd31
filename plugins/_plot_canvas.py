"""A matplotlib figure in a dock, created on first use.

matplotlib is imported only when something is drawn, so opening the docks stays
light (see ``tests/test_plugin_gui.py::test_plugin_start_up_adds_no_scipy_or_simpleitk``).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget


def _unit(label: str) -> str:
    """``"total signal (a.u.·mm³)"`` → ``"(a.u.·mm³)"``."""
    i = label.rfind("(")
    return label[i:] if i >= 0 else ""


class PlotPanel(QWidget):
    """A placeholder label that becomes a ``FigureCanvasQTAgg`` on the first plot.

    Parameters
    ----------
    placeholder : str
        Text shown until something is plotted.
    height_px : int
        Minimum height of the figure in the dock.
    """

    def __init__(self, placeholder: str = "No plot yet.", *, height_px: int = 360, parent=None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._placeholder = QLabel(placeholder)
        self._layout.addWidget(self._placeholder)
        self._height_px = height_px
        self.figure = None
        self.canvas = None

    def _ensure_canvas(self):
        if self.canvas is not None:
            return
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.0, 4.2), dpi=90, layout="constrained")
        self.figure.patch.set_facecolor("#262930")  # napari's dark theme background
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(self._height_px)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self._placeholder.hide()
        self._layout.addWidget(self.canvas)
        self.setMinimumHeight(self._height_px)

    def clear(self, message: str | None = None) -> None:
        if self.figure is not None:
            self.figure.clear()
            self.canvas.draw_idle()
        if message is not None:
            self._placeholder.setText(message)

    def plot_calibration(
        self,
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
        """Phantoms, fitted line, prediction band and (optionally) residuals and ROIs.

        Parameters
        ----------
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
        self._ensure_canvas()
        fig = self.figure
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
        if (
            names is not None and len(names) <= 4
        ):  # more would crowd the low end; the table names them
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
        leg = ax.legend(fontsize=7, loc="upper left", facecolor="#262930", edgecolor="#888888")
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
        self.canvas.draw_idle()

    def save_png(self, path, dpi: int = 150) -> None:
        """Write the current figure to a PNG (white text kept on the dark background)."""
        if self.figure is None:
            raise RuntimeError("nothing plotted yet")
        self.figure.savefig(path, dpi=dpi, facecolor=self.figure.get_facecolor())
