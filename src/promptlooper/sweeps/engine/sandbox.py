"""A Jinja sandbox that bounds what a template may build and compute.

Jinja's own sandbox keeps templates away from Python internals, but not from the machine:
``{{ 'a' * 10**9 }}``, ``{{ 'a'.center(10**9) }}`` or nested loops over ``range`` take
gigabytes or minutes of the server that renders them. ``BoundedSandbox`` closes that through
the sandbox's documented hooks:

- constant folding at compile time is off (``optimized=False``), so compiling costs only
  parsing and nothing a template computes runs before it renders under these limits;
- ``*``, ``**``, ``+`` and ``%`` are intercepted (``call_binop``) and checked before Python
  computes them; so are the calls (``call``) and filters that grow their input by a number
  or string argument (``center``, ``replace``, ``join``, ``format``, ``lipsum``...);
- every value a template builds (literals, ``~``, results of calls and filters, what it
  outputs) is at most ``MAX_VALUE`` characters or items, counted through nested collections;
- a render makes at most ``MAX_STEPS`` loop iterations and ``MAX_CALLS`` calls, outputs at most
  ``MAX_OUTPUT`` characters (``concat``), and builds at most ``MAX_WORK`` characters or items
  in all, so its time is bounded as well as its memory.

The limits and the checks are in ``limits``; crossing one raises ``LimitExceeded``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from jinja2 import nodes, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

from promptlooper.sweeps.engine.limits import (
    FILTER_CHECKS,
    MAX_INT_BITS,
    MAX_OUTPUT,
    MAX_VALUE,
    STR_METHOD_CHECKS,
    LimitExceeded,
    binop_size,
    bounded_filter,
    bounded_lipsum,
    check_printf,
    checked,
    current_meter,
    joined,
    too_big,
)


@pass_eval_context
def _finalize(_eval_ctx: EvalContext, value: Any) -> Any:
    """What ``{{ ... }}`` outputs, checked; it asks for a context so that Jinja never
    evaluates an output at compile time, where no meter runs."""
    return checked(value)


class _MeteredCodeGenerator(CodeGenerator):
    """Compiles every loop iteration to a counted call, and literals and ``~`` to values
    checked against ``MAX_VALUE`` before they exist whole."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        tick = nodes.Call(nodes.EnvironmentAttribute("loop_iteration"), [], [], None, None)
        node.body = [nodes.ExprStmt(tick, lineno=node.lineno), *node.body]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def _checked(self, visit: Callable[[Any, Frame], None], node: Any, frame: Frame) -> None:
        if getattr(node, "ctx", "load") != "load":
            visit(node, frame)
            return
        self.write("environment.checked(")
        visit(node, frame)
        self.write(")")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self._checked(super().visit_List, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        self._checked(super().visit_Tuple, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self._checked(super().visit_Dict, node, frame)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox under the limits above (see the module's docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _MeteredCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, finalize=_finalize, **options)
        self.filters = {
            name: bounded_filter(func, FILTER_CHECKS.get(name))
            for name, func in self.filters.items()
        }
        self.globals["lipsum"] = bounded_lipsum(self.globals["lipsum"])

    @staticmethod
    def concat(parts: Iterable[str]) -> str:
        """Join what a render (or a block in it) outputs, stopping past ``MAX_OUTPUT``."""
        return joined(parts, MAX_OUTPUT, "outputs")

    @staticmethod
    def concat_values(values: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``, each operand checked before it becomes a string."""
        return joined((str(checked(value)) for value in values), MAX_VALUE, "joins with ~")

    @staticmethod
    def checked(value: Any) -> Any:
        return checked(value)

    @staticmethod
    def loop_iteration() -> None:
        """Called at each loop iteration, for ``call`` to count it as a step."""

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            check_printf(left)
        judged = binop_size(operator, left, right)
        if judged is not None:
            size, unit = judged
            if unit == "bits" and size > MAX_INT_BITS:
                raise LimitExceeded(
                    f"computes an integer of about {size:,} bits (the limit is {MAX_INT_BITS:,})"
                )
            if unit == "items" and size > MAX_VALUE:
                raise too_big(size)
        return checked(super().call_binop(context, operator, left, right))

    def call(
        __self,  # Jinja's own signature, so that any keyword passes through
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if __obj is BoundedSandbox.loop_iteration:
            current_meter().step()
            return None
        current_meter().call()
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped
        owner = getattr(target, "__self__", None)
        check = STR_METHOD_CHECKS.get(getattr(target, "__name__", ""))
        if isinstance(owner, str) and check is not None:
            args = check(owner, args)
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        except OverflowError as exc:  # ``range`` past the sandbox's MAX_RANGE
            raise LimitExceeded(f"makes a range of over {MAX_RANGE:,} items") from exc
        return checked(result)
