"""The demo's live window and its replay: keys, pause, stop, the latent explorer.

Everything here needs pyplot and an interactive backend (Tk, Qt, GTK, macOS, whichever the
user has: the package itself depends on none), so ``numpyvae.demo`` imports this module only
when a window is wanted and ``window_available`` says one can open.

Keys (matplotlib's own stay, except that ``q`` is ours):
    space   pause / resume (training waits between two steps; the window stays responsive)
    q       stop: the demo saves a checkpoint, writes the GIF and closes the window
    f       full screen (matplotlib's key)
Mouse over the scatter or the manifold: the explorer panel decodes the z under the pointer.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

KEYS = "space  pause / resume     q  stop and save     f  full screen     mouse over z  decode it"
REPLAY_KEYS = "space pause   ← → step   q quit"


class DemoStopped(Exception):
    """The lecturer pressed q or closed the window: stop training cleanly."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def window_available() -> bool:
    """True if a live matplotlib window can open: a display and an interactive backend.

    Without DISPLAY/WAYLAND_DISPLAY on Linux this returns False without importing pyplot.
    """
    if sys.platform not in ("darwin", "win32") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib.pyplot as plt

    try:
        from matplotlib.backends import BackendFilter, backend_registry

        interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib.rcsetup import interactive_bk as interactive
    return plt.get_backend().lower() in {name.lower() for name in interactive}


def _figure(title: str, figsize: tuple[float, float]):
    """A pyplot figure without the toolbar (it would push a 720-pixel figure off a 720-pixel
    projector) and with ``q`` taken from matplotlib's quit keys, so that it is ours."""
    import matplotlib.pyplot as plt

    plt.rcParams["keymap.quit"] = [k for k in plt.rcParams["keymap.quit"] if k != "q"]
    with plt.rc_context({"toolbar": "None"}):
        return plt, plt.figure(title, figsize=figsize)


def _screen_pixels(manager) -> tuple[int, int] | None:
    """The screen's size in pixels, for Tk and Qt windows; None for other toolkits."""
    window = getattr(manager, "window", None)
    try:
        if hasattr(window, "winfo_screenwidth"):  # Tk
            return int(window.winfo_screenwidth()), int(window.winfo_screenheight())
        geometry = window.screen().availableGeometry()  # Qt
        return int(geometry.width()), int(geometry.height())
    except Exception:  # another toolkit, or no screen information
        return None


def fit_to_screen(fig, margin: int = 0) -> None:
    """Shrink the window to the screen (keeping its shape) if the figure does not fit; called
    on every resize, since Tk learns its pixel ratio only once the window is shown.

    A 12.8 x 7.2 inch figure is 1280 x 720 pixels only at 100 pixels per inch; Tk scales by
    the screen's reported dpi (1333 x 750 on a 100-dpi X display), so on a 1280 x 720
    projector the footer and the right column would be cut off.
    """
    manager = fig.canvas.manager
    screen = _screen_pixels(manager)
    if screen is None:
        return
    width, height = fig.canvas.get_width_height(physical=True)
    scale = min((screen[0] - margin) / width, (screen[1] - margin) / height)
    if scale < 1:
        try:
            manager.resize(int(width * scale), int(height * scale))
        except Exception:
            pass  # the window keeps its size: 'f' still gives full screen


class LiveWindow:
    """The live demo window; every method is safe once the window has been closed."""

    def __init__(self, log: Callable[[str], None], figsize: tuple[float, float]):
        self.log = log
        self.plt, self.fig = _figure("numpyvae demo", figsize)
        self.plt.ion()
        self.paused = self.finished = False
        self.stop_reason: str | None = None
        self.panels = None  # the DemoFigure, once attached
        self._decode: Callable[[np.ndarray], np.ndarray] | None = None
        canvas = self.fig.canvas
        canvas.mpl_connect("key_press_event", self._on_key)
        canvas.mpl_connect("close_event", self._on_close)
        canvas.mpl_connect("motion_notify_event", self._on_mouse)
        canvas.mpl_connect("button_press_event", self._on_mouse)
        canvas.mpl_connect("resize_event", lambda event: fit_to_screen(self.fig))

    def attach(self, panels, decode: Callable[[np.ndarray], np.ndarray]) -> None:
        """The figure's panels, and z (2,) -> decoded image (784,) for the explorer."""
        self.panels, self._decode = panels, decode
        self._show_state()

    # ------------------------------------------------------------------ events
    def _on_key(self, event) -> None:
        if event.key == " ":
            self.paused = not self.paused
            self._show_state()
            self.fig.canvas.draw_idle()
        elif event.key in ("q", "Q"):
            if self.finished:
                self.close()
            else:
                self.stop_reason = self.stop_reason or "q pressed"

    def _on_close(self, event) -> None:
        self.stop_reason = self.stop_reason or "window closed"

    def _on_mouse(self, event) -> None:
        p = self.panels
        if p is None or self._decode is None or event.xdata is None:
            return
        if event.inaxes not in (p.ax_z, p.ax_x):
            return
        z = np.array([event.xdata, event.ydata])
        p.explore(tuple(z), self._decode(z))
        self.fig.canvas.draw_idle()

    def _show_state(self) -> None:
        if self.panels is None:
            return
        if self.paused:
            self.panels.footer.set_text("PAUSED    " + KEYS.replace("pause / resume", "resume"))
            self.panels.footer.set_color("firebrick")
        else:
            self.panels.footer.set_text(KEYS)
            self.panels.footer.set_color("0.3")

    # ------------------------------------------------------------------ the demo's calls
    def is_open(self) -> bool:
        return self.plt.fignum_exists(self.fig.number)

    def draw(self) -> None:
        if self.is_open():
            self.fig.canvas.draw_idle()
            self.plt.pause(0.001)


    def poll(self, step: int) -> None:
        """Between two training steps (Trainer's on_step): handle window events every 10th
        step, wait while paused, and raise DemoStopped after q or a closed window."""
        if step % 10 == 0 and self.is_open():
            self.fig.canvas.flush_events()
        if self.paused:
            self.wait_while_paused()
        self.check_stop()

    def check_stop(self) -> None:
        if self.stop_reason is None and not self.is_open():
            self.stop_reason = "window closed"
        if self.stop_reason is not None:
            raise DemoStopped(self.stop_reason)

    def wait_while_paused(self) -> None:
        """Run the GUI event loop until space, q or a closed window ends the pause.

        The trainer turns Ctrl-C into a flag it checks after this step, so a Ctrl-C while
        paused must also end the pause: the handler is wrapped for as long as we wait.
        """
        wrapped = None
        if threading.current_thread() is threading.main_thread():
            wrapped = signal.getsignal(signal.SIGINT)

            def on_sigint(signum, frame):
                self.paused = False
                if callable(wrapped):
                    wrapped(signum, frame)
                else:
                    raise KeyboardInterrupt

            signal.signal(signal.SIGINT, on_sigint)
        try:
            while self.paused and self.stop_reason is None and self.is_open():
                self.fig.canvas.start_event_loop(0.05)
        finally:
            if wrapped is not None:
                signal.signal(signal.SIGINT, wrapped)
        self._show_state()

    def wait_until_closed(self) -> None:
        """After the last epoch: keep the window (and the explorer) until q or close."""
        self.finished, self.paused = True, False
        self.plt.ioff()
        if self.is_open():
            self.log("the window stays open for the latent explorer: press q or close it "
                     "to finish")
            self.plt.show()  # blocks until the window is closed

    def close(self) -> None:
        if self.is_open():
            self.plt.close(self.fig)


# --------------------------------------------------------------------------- replay
def replay(frames: Sequence[Path], log: Callable[[str], None], frame_ms: int = 700,
           last_ms: int = 2500, fullscreen: bool = True) -> None:
    """Play the PNG frames in a window, looping, until q or the window is closed."""
    from PIL import Image

    images = []
    for f in frames:
        with Image.open(f) as im:
            images.append(np.asarray(im.convert("RGB")))
    h, w = images[0].shape[:2]
    plt, fig = _figure("numpyvae demo replay", (w / 100, h / 100))
    fig.set_facecolor("white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    shown = ax.imshow(images[0], interpolation="antialiased")
    # bottom right: the frames have their title at the top and their footer in the middle
    note = fig.text(0.995, 0.008, "", ha="right", va="bottom", fontsize=11, color="0.3")
    state = {"k": 0, "paused": False}

    def show(k: int) -> None:
        state["k"] = k % len(images)
        shown.set_data(images[state["k"]])
        pause = "PAUSED   " if state["paused"] else ""
        note.set_text(f"{pause}{frames[state['k']].name}  ({state['k'] + 1}/{len(images)})\n"
                      f"{REPLAY_KEYS}")
        note.set_color("firebrick" if state["paused"] else "0.3")
        fig.canvas.draw_idle()

    def tick() -> None:
        if not state["paused"]:
            show(state["k"] + 1)
            timer.interval = last_ms if state["k"] == len(images) - 1 else frame_ms

    def on_key(event) -> None:
        if event.key == " ":
            state["paused"] = not state["paused"]
            show(state["k"])
        elif event.key in ("right", "left"):
            state["paused"] = True
            show(state["k"] + (1 if event.key == "right" else -1))
        elif event.key in ("q", "Q", "escape"):
            plt.close(fig)

    fig.canvas.mpl_connect("key_press_event", on_key)
    fig.canvas.mpl_connect("resize_event", lambda event: fit_to_screen(fig))
    timer = fig.canvas.new_timer(interval=frame_ms)
    timer.add_callback(tick)
    show(0)
    if fullscreen:
        try:
            fig.canvas.manager.full_screen_toggle()
        except Exception as err:  # not every backend or window manager can
            log(f"(no full screen here: {type(err).__name__}: {err})")
    log(f"replaying {len(images)} frames from {Path(frames[0]).parent}: space pauses, "
        "←/→ step, q quits")
    timer.start()
    plt.show()
    timer.stop()
