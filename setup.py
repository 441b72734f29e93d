"""Build hook for the optional compiled fan-out (everything else is in pyproject.toml).

``optional=True``: where the extension cannot be built (no C compiler, no
Python headers, a platform without BSD sockets), installation still succeeds
and hubbub uses the pure-Python fan-out (``hubbub.gateway.delivery``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hubbub.gateway._delivery",
            ["src/hubbub/gateway/_delivery.c"],
            optional=True,
        )
    ]
)
