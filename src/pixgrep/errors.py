"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class PixgrepError(Exception):
    """A problem with the user's input or environment, worded for the user (one line)."""


class CatalogUnavailable(PixgrepError):
    """The catalog's storage failed (damaged, disk full, busy, not writable), not the request: the
    server answers 503 where a request's own fault is a 400."""


_interrupted = False  # Ctrl-C arrived in this process (see on_interrupt)


def on_interrupt(signum, frame) -> None:
    """The CLI's SIGINT handler: Python's own (raise KeyboardInterrupt), and a note of it. Native
    code that runs Python while Ctrl-C arrives turns the KeyboardInterrupt into its own error
    (onnxruntime's import: ImportError "initialization failed"; usearch: RuntimeError "Operation has
    been terminated"), often without chaining it: the note lets the CLI still call it an interrupt."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def watch_interrupts() -> None:
    """Make on_interrupt the SIGINT handler where Python's own is (the main thread of a command;
    a test harness keeps its own), and forget an earlier command's Ctrl-C in this process."""
    import signal

    global _interrupted
    _interrupted = False
    handler = signal.getsignal(signal.SIGINT)
    if handler is signal.default_int_handler or handler is on_interrupt:
        try:
            signal.signal(signal.SIGINT, on_interrupt)
        except ValueError:  # not the main thread
            pass


def was_interrupted(exc: BaseException) -> bool:
    """Whether `exc` comes from a Ctrl-C (noted by on_interrupt, or a KeyboardInterrupt it chains)."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            break
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return _interrupted
