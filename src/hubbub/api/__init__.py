"""The REST transport (Starlette), described by the OpenAPI document it serves."""
