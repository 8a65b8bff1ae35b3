"""A terminal dashboard for microgpt, on the standard library's `curses`: `python -m microgpt.tui`.

Six tabs in one fixed frame (tab bar, body, message line, key bar): Train, Monitor, Logs, Runs,
Models, Chat. The modules, bottom up:

    text.py, widgets.py, graphs.py   pure drawing: safe text, styled lines, sparklines and charts
    metrics.py                        the metric catalogue and RunTracker (events -> series)
    knobs.py, disk.py, persist.py     the trainer's knobs, what is on disk, the saved settings
    runner.py, chat_worker.py         background work: the trainer process, the chat model thread
    textinput.py, picker.py           small interactive pieces: a text field, a pick-one list
    base.py, *_tab.py                 one module per tab, each keys() / handle_key() / render()
    app.py                            the frame, the global keys and the main loop
    terminal.py                       the only curses code: key names in, painted lines out

Everything above terminal.py is pure, so tests drive the whole dashboard without a terminal.
"""
