"""vizdebug's TensorBoard dashboard plugin (entry point ``tensorboard_plugins``)."""
