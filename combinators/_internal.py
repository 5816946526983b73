"""The internal API: what the object-style layer takes from the core besides its public names.

``orchestration`` builds its trees with the public combinators (``from .
import ...``) and takes only these from the core's private modules, so a
change there touches this one module:

* argument checks that give the library's own messages (``check_name``,
  ``require_agent``, ``seconds``);
* the extension points for its one node kind, the task pool: ``compiles``
  and the compile context (``Compiler``, ``Env``, ``Runner``,
  ``segments``), the fail-fast nursery (``open_nursery``,
  ``keep_first_crash``), ``each``'s way of handing work to ``n`` workers
  (``start_pulling``) and ``estimates_as_group``;
* ``serve``, the scaffold ``stream`` gives its outcomes to a reader with.
"""

from __future__ import annotations

from ._cancel import keep_first_crash as keep_first_crash
from ._cancel import open_nursery as open_nursery
from ._estimate import estimates_as_group as estimates_as_group
from ._check import _check_name as check_name
from ._expr import _require_agent as require_agent
from ._check import _seconds as seconds
from ._fanout import _start_pulling as start_pulling
from ._plan import Compiler as Compiler
from ._plan import Env as Env
from ._plan import compiles as compiles
from ._plan import segments as segments
from ._stream import serve as serve
from ._types import Runner as Runner

__all__ = [
    "Compiler",
    "Env",
    "Runner",
    "check_name",
    "compiles",
    "estimates_as_group",
    "keep_first_crash",
    "open_nursery",
    "require_agent",
    "seconds",
    "segments",
    "serve",
    "start_pulling",
]
