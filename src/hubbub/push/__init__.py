"""Push providers: the port (``base``) and one module per provider (``expo``, ``webhook``)."""
