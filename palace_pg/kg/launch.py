"""Wrapper launchers: mempalace's CLI and MCP server with the AGE graph, without the .pth hook.

The fallback of ``mempalace-seams.md`` §4.2 (option 2) for environments where a
``.pth`` file is not processed (``python -S``, some embedded interpreters):
these entry points install the swap first, whatever MEMPALACE_KG_BACKEND says,
then hand over to mempalace's own ``main``.
"""

from __future__ import annotations

from . import hook


def mempalace_main() -> None:
    hook.install(force=True)
    from mempalace.cli import main

    main()


def mcp_main() -> None:
    hook.install(force=True)
    from mempalace.mcp_server import main

    main()
