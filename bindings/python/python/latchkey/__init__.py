"""Latchkey: mutually authenticated, end-to-end encrypted secure channels.

Everything here is implemented in Rust (``latchkey._latchkey``, over the ``latchkey-facade`` crate); this
package only re-exports it, plus the asyncio helpers for the direct-TCP framing in :mod:`latchkey.direct_tcp`.

Two levels: :class:`SecureChannel` is sans-IO (you move the bytes); :class:`Node` is the runtime (asyncio:
``async with Node() as node``, ``await node.connect(..., trusted=[...])``, ``async for message in mailbox``).
Its async methods return coroutines (``asyncio.create_task(node.connect(...))`` works). Trust is never
implied: ``SecureChannel.initiator/responder`` and the node's listeners, connections, services, outlets and
mailboxes take ``trusted=[...]`` or an explicit ``trust_any=True`` and raise :class:`Insecure` without either.

Errors: every failure raises a subclass of :class:`LatchkeyError`, one per entry of Latchkey's error table
(``_error_table()`` lists ``(name, code, description)``; the classes are made from it when the module loads):
``DecryptFailed``, ``Replay``, ``UntrustedPeer``, ``InvalidState``, ``Timeout`` ... Some also derive from the
built-in a Python user would catch: ``Timeout`` is a ``TimeoutError``; ``TransportError``, ``BadAddress``
and ``AddressInUse`` are ``OSError``; ``ChannelClosed`` and ``DeliveryFailed`` are ``ConnectionError``;
``InvalidArgument`` (e.g. a secret of the wrong length) is a ``ValueError``. Arguments of the wrong Python
type raise ``TypeError``.
"""

from typing import TYPE_CHECKING

from latchkey import _latchkey
from latchkey._latchkey import *  # noqa: F403 -- the classes, and one exception class per error-table entry
from latchkey._latchkey import __version__ as __version__
from latchkey._latchkey import _error_table as _error_table

if not TYPE_CHECKING:  # type checkers take the names from the stub (_latchkey.pyi) instead
    __all__ = sorted(name for name in _latchkey.__all__ if not name.startswith("_")) + ["__version__"]

del TYPE_CHECKING
