"""vizdebug's Visdom sink: live windows on a Visdom server (entry point ``vizdebug.sinks``)."""
