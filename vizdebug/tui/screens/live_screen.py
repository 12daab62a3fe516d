"""The live debugger: attach to a training process, pause, step, set breakpoints, fetch tensors.

Every call to the training process runs in a thread worker; results come back through
``App.call_from_thread``, and a worker pumps the client's server messages (paused, resumed,
disconnected) into :class:`LiveScreen.ServerEvent` messages. The UI thread never waits on the
network. If the process goes away the screen says so and stops sending.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy.typing as npt
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

from ...live import LiveClient, LiveError, LiveRun
from ...live.breaks import parse_breaks
from ...ui.safe import safe
from ..live_control import (
    control_label,
    control_message,
    gone_message,
    observing_note,
    running,
)
from ..live_keys import LIVE_KEYS, guard_index_box
from ..live_worker import fetch_tensor, pump_events
from ..widgets.breakpoint_list import BreakpointList
from ..widgets.live_status import LiveStatus
from .prompt import PromptScreen
from .step_view import StepScreen

__all__ = ["LIVE_KEYS", "LiveScreen"]

_CONTROL = frozenset({"pause", "continue", "step", "next_step", "run_to", "break", "clear"})
#: Tensors kept selected from one paused point to the next when they exist there.
_PREFERRED = ("output", "output0", "grad_output", "grad_output0")


class LiveScreen(StepScreen):
    """Attached to one live run.

    Args:
        live: The run (from :func:`vizdebug.live.find_live_runs` or ``read_live_file``).
        control: Ask for control; without it (or when another client controls) observe.
    """

    # The stepper's letter keys are priority bindings: they act whatever has focus (the
    # index box takes only index characters, see guard_index_box), so "c" continues
    # instead of landing in the index box.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "command('pause')", "Pause", priority=True),
        Binding("c", "command('continue')", "Continue", priority=True),
        Binding("s", "command('step')", "Step", priority=True),
        Binding("n", "command('next_step')", "Next step", priority=True),
        Binding("g", "run_to", "Run to", priority=True),
        Binding("b", "add_break", "Break", priority=True),
        Binding("o", "take_control", "Take control", priority=True),
        # one of the two is active (check_action), and the footer shows that one
        Binding("escape", "to_stepper", "Stepper"),
        Binding("escape", "close", "Detach"),
        Binding("question_mark", "help", "Help"),
    ]
    DEFAULT_CSS = """
    LiveScreen #step-tensors:focus, LiveScreen #breakpoints:focus {
        border: heavy $accent;
        background: $accent 8%;
    }
    LiveScreen TensorInspector Input:focus { border: tall $accent; background: $accent 25%; }
    """
    #: Seconds between two status polls while training runs (the step shown).
    POLL_SECS = 1.0
    HELP_TITLE = "Live debugger — keys"
    HELP_KEYS = LIVE_KEYS
    WITH_BREAKPOINTS = True

    class ServerEvent(Message):
        """A message the training process sent on its own (or the connection's end)."""

        def __init__(self, event: dict[str, Any]) -> None:
            super().__init__()
            self.event = event

    def __init__(self, live: LiveRun, *, control: bool = True) -> None:
        super().__init__()
        self.live = live
        self.want_control = control
        self.client: LiveClient | None = None
        self.controlling = False
        self.gone = False
        self.paused = False
        self.position: dict[str, Any] | None = None
        self.reason = ""
        #: Bumped at every pause and resume: replies about an older position are dropped.
        self.generation = 0
        #: The training step while running (from the status polls).
        self.running_step: int | None = None
        #: Whether no client controls the run (known from status and "control" events).
        self.control_free = False
        #: The server said it was closing (training ended) before the connection ended.
        self.server_closed = False
        self._closing = False
        self._polling = False

    # -- lifecycle -----------------------------------------------------------------------

    def on_mount(self) -> None:
        """Connect in a worker."""
        self.sub_title = safe(f"live · {self.live.run or self.live.run_dir.name}")
        self._render_status()
        self.clear_tensors("connecting to the training process…")
        self.query_one("#step-tensors").focus()
        guard_index_box(self.query_one("#tensor-index", Input))
        self.run_worker(self._connect, thread=True, group="live-connect")
        self.set_interval(self.POLL_SECS, self._poll)

    def on_unmount(self) -> None:
        """Detach (training goes on; a paused run resumes after its timeout)."""
        self._closing = True
        if self.client is not None:
            self.client.close()

    def _call(self, func: Callable[..., object], *args: Any) -> None:
        if self._closing:
            return
        try:
            self.app.call_from_thread(func, *args)
        except Exception:
            # Results that arrive while the app shuts down (or the screen goes) are dropped.
            if self.is_attached and self.app.is_running:
                raise

    def _connect(self) -> None:
        try:
            client = LiveClient.attach(self.live, control=self.want_control)
            status = client.status()
        except (LiveError, OSError) as exc:
            self._call(self._failed, f"Cannot attach to {self.live.run_dir}: {exc}")
            return
        if self._closing:
            client.close()
            return
        self._call(self._connected, client, status)
        pump_events(client, self._post_event, lambda: self._closing)

    def _post_event(self, event: dict[str, Any]) -> None:
        if not self._closing:
            self.post_message(self.ServerEvent(event))

    def _connected(self, client: LiveClient, status: dict[str, Any]) -> None:
        self.client = client
        self.controlling = client.controlling
        self.control_free = not self.controlling and not status.get("controlled", True)
        self._say_control()
        self._apply_status(status, self.generation)
        if not self.paused:
            self._render_status()
            self.clear_tensors("training is running: press p to pause")

    def _failed(self, text: str) -> None:
        self.gone = True
        self._render_status()
        self.message(text, severity="error")
        self.clear_tensors("not attached")

    # -- what the server says ------------------------------------------------------------

    def on_live_screen_server_event(self, message: LiveScreen.ServerEvent) -> None:
        """Follow pauses and resumes; stop when the process goes away."""
        event = message.event
        kind = event.get("event")
        if kind == "paused":
            self.generation += 1
            self.paused = True
            self.position = event.get("position")
            self.reason = str(event.get("reason", ""))
            self._render_status()
            self._refresh(self.generation)
        elif kind == "resumed":
            self.generation += 1
            self.paused = False
            self._render_status()
        elif kind == "control":
            self.control_free = bool(event.get("free"))
            self._say_control(left=self.control_free)
            self._render_status()
        elif kind == "closing":
            self.server_closed = True
        elif kind == "disconnected" and not self.gone:
            self.gone = True
            self.paused = False
            self._render_status()
            dropped = not self.server_closed and running(self.live.pid)
            self.message(gone_message(self.live.pid, dropped=dropped), severity="error")

    def _render_status(self) -> None:
        state = (
            "disconnected"
            if self.gone
            else ("connecting" if self.client is None else ("paused" if self.paused else "running"))
        )
        control = control_label(
            attached=self.client is not None, controlling=self.controlling, free=self.control_free
        )
        self.query_one(LiveStatus).show(
            state=state,
            position=self.position if self.paused or self.gone else None,
            reason=self.reason if self.paused else "",
            control=control,
            run=self.live.run or self.live.run_dir.name,
            step=None if self.paused else self.running_step,
        )

    def _say_control(self, *, left: bool = False) -> None:
        """The message about control for an observer (none for the controller)."""
        if not self.controlling and not self.gone:
            self.message(control_message(controlling=False, free=self.control_free, left=left))

    def _poll(self) -> None:
        """While training runs, ask where it is (the step shown) in a worker."""
        client = self.client
        if client is None or self.gone or self.paused or self._polling or self._closing:
            return
        self._polling = True

        def work() -> None:
            try:
                status = client.status()
            except (LiveError, OSError):
                status = None
            self._call(self._polled, status)

        self.run_worker(work, thread=True, group="live-poll")

    def _polled(self, status: dict[str, Any] | None) -> None:
        self._polling = False
        if status is None or self.gone:
            return
        step = status.get("step")
        self.running_step = step if isinstance(step, int) else None
        if not self.controlling:
            free = not status.get("controlled", True)
            if free != self.control_free:
                self.control_free = free
                self._say_control()
        if not self.paused:
            self._render_status()

    def _refresh(self, generation: int) -> None:
        """Ask for the status (tensors here, breakpoints) in a worker."""
        client = self.client
        if client is None or self.gone:
            return

        def work() -> None:
            try:
                status = client.status()
            except (LiveError, OSError):
                return  # the disconnected event tells the user
            self._call(self._apply_status, status, generation)

        self.run_worker(work, thread=True, group="live-status")

    def _apply_status(self, status: dict[str, Any], generation: int) -> None:
        self.query_one(BreakpointList).set_breakpoints(status.get("breakpoints") or [])
        if generation != self.generation:
            return  # training moved on since this status was asked for
        if status.get("paused") and not self.paused:  # attached to an already paused run
            self.paused = True
            self.position = status.get("position")
            self.reason = str(status.get("reason", ""))
            self._render_status()
        if not self.paused:
            return
        names = [str(n) for n in status.get("tensors") or []]
        prefer = (self.shown_tensor, *_PREFERRED)
        if names:
            self.set_tensor_names(names, prefer=prefer)
        else:
            self.clear_tensors("no tensors at this point")

    # -- tensors -------------------------------------------------------------------------

    def load_tensor(self, name: str) -> None:
        """Fetch ``name`` at the paused point in a worker."""
        client, generation = self.client, self.generation
        if client is None or not self.paused or self.gone:
            return
        self._shown_tensor = name

        def work() -> None:
            try:
                array, note = fetch_tensor(client, name)
            except (LiveError, OSError) as exc:
                self._call(self._fetch_failed, name, str(exc), generation)
                return
            self._call(self._fetched, name, array, note, generation)

        self.run_worker(work, thread=True, group="live-fetch", exclusive=True)

    def _fetched(self, name: str, array: npt.NDArray[Any], note: str, generation: int) -> None:
        if generation != self.generation or self.position is None:
            return
        pos = self.position
        title = f"step {pos.get('step')} · {pos.get('phase')} · {pos.get('module') or '(model)'}"
        self.show_tensor(name, array, title=title)
        if note:
            self.notify(safe(note), severity="warning", markup=False)

    def _fetch_failed(self, name: str, error: str, generation: int) -> None:
        if generation == self.generation and not self.gone:
            self.notify(safe(f"Cannot fetch {name}: {error}"), severity="error", markup=False)

    # -- commands ------------------------------------------------------------------------

    def send(
        self, op: str, after: Callable[[dict[str, Any]], None] | None = None, **fields: Any
    ) -> None:
        """Send a request in a worker; errors become notifications.

        Args:
            op: The request (``pause``, ``step``, ``break``, ...).
            after: Called on the UI thread with the reply.
            fields: The request's fields.
        """
        client = self.client
        if client is None or self.gone:
            self.notify("Not attached to a training process.", severity="warning", markup=False)
            return
        if op in _CONTROL and not self.controlling:
            self.notify(observing_note(free=self.control_free), markup=False)
            return

        def work() -> None:
            try:
                reply = client.request(op, **fields)
            except (LiveError, OSError) as exc:
                if not client.closed:
                    self._call(self._error, f"{op}: {exc}")
                return
            if after is not None:
                self._call(after, reply)

        self.run_worker(work, thread=True, group="live-command")

    def _error(self, text: str) -> None:
        self.notify(safe(text), severity="error", markup=False)

    def action_command(self, op: str) -> None:
        """Pause, continue, step or next-step."""
        self.send(op)

    def action_run_to(self) -> None:
        """Ask for a step number and run to it."""
        if self._refuse_control():
            return

        def done(text: str | None) -> None:
            if text is None or not text.strip():
                return
            try:
                step = int(text.strip())
                if step < 0:
                    raise ValueError
            except ValueError:
                self.notify(safe(f"Not a step number: {text!r}"), severity="error", markup=False)
                return
            self.send("run_to", step=step)

        self.app.push_screen(PromptScreen("Run to training step:", placeholder="e.g. 100"), done)

    def action_add_break(self) -> None:
        """Ask for a breakpoint specification and set it."""
        if self._refuse_control():
            return

        def done(text: str | None) -> None:
            if text is None or not text.strip():
                return
            try:
                breaks = parse_breaks(text.strip())
            except (ValueError, TypeError) as exc:
                self.notify(safe(exc), severity="error", markup=False)
                return
            for spec in breaks:
                self.send(
                    "break",
                    self._breaks_changed,
                    kind=spec.kind,
                    value=spec.value,
                    module=spec.module,
                    once=spec.once,
                )

        self.app.push_screen(
            PromptScreen(
                "Add a breakpoint:",
                placeholder="nan | step:N | module:GLOB | abs>T | grad_norm>T | zero_frac>F @GLOB",
            ),
            done,
        )

    def on_breakpoint_list_clear(self, message: BreakpointList.Clear) -> None:
        """Clear a breakpoint."""
        self.send("clear", self._breaks_changed, break_id=message.break_id)

    def _breaks_changed(self, reply: dict[str, Any]) -> None:
        self._refresh(self.generation)

    def action_take_control(self) -> None:
        """Ask for control (granted if no other client has it)."""

        def after(reply: dict[str, Any]) -> None:
            self.controlling = bool(reply.get("control"))
            if self.controlling:
                self.control_free = False
            self._render_status()
            if self.controlling:
                self.message("")
                self.notify("You control this run now.", markup=False)
            else:
                self.notify(
                    "Another client still controls this run.", severity="warning", markup=False
                )

        self.send("control", after)

    def _refuse_control(self) -> bool:
        if self.client is None or self.gone:
            self.notify("Not attached to a training process.", severity="warning", markup=False)
            return True
        if not self.controlling:
            self.notify(observing_note(free=self.control_free), markup=False)
            return True
        return False

    # -- focus: keys act on what has focus, as the footer shows -------------------------

    def _on_stepper(self) -> bool:
        focused = self.focused
        return focused is None or focused.id == "step-tensors"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape goes back to the stepper from elsewhere, and detaches from the stepper."""
        if action == "to_stepper":
            return not self._on_stepper()
        if action == "close":
            return self._on_stepper()
        return True

    def on_descendant_focus(self) -> None:
        """The footer follows the focus (Escape's meaning changes)."""
        self.refresh_bindings()

    def on_descendant_blur(self) -> None:
        """The footer follows the focus."""
        self.refresh_bindings()

    def action_to_stepper(self) -> None:
        """Give the focus back to the stepper (the tensor list)."""
        self.query_one("#step-tensors").focus()
