"""Read an endpoint's contract from its own code, so the document cannot drift from the handler.

From the handler's source (and, transitively, the module-level helper functions it calls):

- the body model: `read_json(request, Model)`;
- query parameters: `query_int(request, "name", low, high[, default])` (an integer in range) and
  `request.query_params.get("name")` / `request.query_params["name"]` (a string);
- success statuses: `status_code=<int>` keywords (200 when none);
- errors: every `AppError` subclass it constructs, with its `status=`/`code=` keywords when given;
- the permission of `@requires(...)` (`__vonix_permission__`), which fixes the auth requirement.

Errors raised deeper (inside services) are declared on the route with `api(..., errors=...)`.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any

from pydantic import BaseModel

from server.errors import AppError

MAX_DEPTH = 5
# The generator adds the auth errors from the route's auth kind; scanning the resolver would add
# them to every route that merely reads its principal.
NOT_SCANNED = frozenset({"server.auth.principal"})


@dataclass
class QueryParam:
    name: str
    schema: dict[str, Any]


@dataclass
class HandlerFacts:
    permission: str | None = None
    body: type[BaseModel] | None = None
    query: dict[str, QueryParam] = field(default_factory=dict)
    statuses: set[int] = field(default_factory=set)
    errors: set[tuple[int, str]] = field(default_factory=set)
    open_statuses: set[int] = field(default_factory=set)  # statuses whose code is computed at run time
    docstring: str | None = None


def unwrap(endpoint: Any) -> tuple[Any, str | None]:
    """The innermost function under decorators, and the `@requires` permission found on the way."""
    permission = None
    current = endpoint
    while True:
        permission = permission or getattr(current, "__vonix_permission__", None)
        inner = getattr(current, "__wrapped__", None)
        if inner is None:
            return current, permission
        current = inner


def facts_of(endpoint: Any) -> HandlerFacts:
    function, permission = unwrap(endpoint)
    facts = HandlerFacts(permission=permission, docstring=inspect.getdoc(function))
    _scan(function, facts, depth=0, seen=set())
    return facts


def _namespace(function: FunctionType) -> dict[str, Any]:
    names = dict(function.__globals__)
    if function.__closure__:
        for name, cell in zip(function.__code__.co_freevars, function.__closure__, strict=True):
            try:
                names[name] = cell.cell_contents
            except ValueError:  # an empty cell
                continue
    return names


def _nodes(function: FunctionType) -> tuple[ast.AST, ...] | None:
    """Every node of a function's syntax tree (None when its source cannot be read)."""
    return _parsed(function.__code__)


# A handler's source does not change while the process runs, but the document is built once per
# app and a process may build many (each test server does): parse and walk every function once.
# Bounded by the number of functions in the code base.
@functools.cache
def _parsed(code: Any) -> tuple[ast.AST, ...] | None:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError):
        return None
    return tuple(ast.walk(tree))


def _returns_class(node: ast.AST, names: dict[str, Any]) -> type | None:
    """The class a call evaluates to: a constructor, or a function annotated to return a class."""
    if isinstance(node, ast.Await):
        node = node.value
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    target = names.get(node.func.id)
    if isinstance(target, type):
        return target
    annotation = getattr(target, "__annotations__", {}).get("return") if isinstance(target, FunctionType) else None
    if isinstance(annotation, str):
        annotation = target.__globals__.get(annotation)  # type: ignore[union-attr]
    return annotation if isinstance(annotation, type) else None


def _local_imports(nodes: tuple[ast.AST, ...]) -> dict[str, Any]:
    """Names a function imports in its body (`from server.auth.service import AccountLocked`)."""
    found: dict[str, Any] = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("server."):
            module = sys.modules.get(node.module)
            for alias in node.names:
                if module is not None and hasattr(module, alias.name):
                    found[alias.asname or alias.name] = getattr(module, alias.name)
    return found


def _local_types(nodes: tuple[ast.AST, ...], names: dict[str, Any]) -> dict[str, type]:
    """`feed = _feed(request)` -> {"feed": Feed}: so `feed.create(...)` can be followed."""
    found = {}
    for node in nodes:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            cls = _returns_class(node.value, names)
            if cls is not None:
                found[node.targets[0].id] = cls
    return found


def _method(node: ast.Attribute, names: dict[str, Any], local: dict[str, type], owner: type | None) -> Any:
    obj = node.value
    cls: Any = None
    if isinstance(obj, ast.Name):
        cls = owner if obj.id == "self" else local.get(obj.id) or names.get(obj.id)
    elif isinstance(obj, ast.Call | ast.Await):
        cls = _returns_class(obj, names)
    if not isinstance(cls, type) or not str(cls.__module__).startswith("server."):
        return None, None
    method = inspect.getattr_static(cls, node.attr, None)
    if isinstance(method, staticmethod | classmethod):
        method = method.__func__
    return (method, cls) if isinstance(method, FunctionType) else (None, None)


def _bindings(node: ast.Call, target: FunctionType, names: dict[str, Any], method: bool) -> dict[str, Any]:
    """The callee's parameters the call gives as constants (`status=400`), to evaluate its body with."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    args = [_const(arg, names) for arg in node.args]
    keywords = {k.arg: _const(k.value, names) for k in node.keywords if k.arg}
    try:
        bound = signature.bind_partial(*([None] if method else []), *args, **keywords)
    except TypeError:
        return {}
    return {name: value for name, value in bound.arguments.items()
            if isinstance(value, int | str) and not (method and name == next(iter(signature.parameters)))}


def _scan(function: Any, facts: HandlerFacts, *, depth: int, seen: set[Any], owner: type | None = None,
          bindings: dict[str, Any] | None = None) -> None:
    bindings = bindings or {}
    key = (function, tuple(sorted(bindings.items())))
    if not isinstance(function, FunctionType) or key in seen or depth > MAX_DEPTH:
        return
    if function.__module__ in NOT_SCANNED:
        return
    seen.add(key)
    nodes = _nodes(function)
    if nodes is None:
        return
    names = {**_namespace(function), **_local_imports(nodes), **bindings}
    local = _local_types(nodes, names)
    for node in nodes:
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                method, cls = _method(node.func, names, local, owner)
                if method is not None:
                    _scan(method, facts, depth=depth + 1, seen=seen, owner=cls,
                          bindings=_bindings(node, method, names, method=True))
            _call(node, names, facts, depth, seen)
        elif isinstance(node, ast.Subscript) and _is_query_params(node.value) and _const_str(node.slice):
            name = _const_str(node.slice)
            assert name is not None
            facts.query.setdefault(name, QueryParam(name, {"type": "string"}))


def _call(node: ast.Call, names: dict[str, Any], facts: HandlerFacts, depth: int, seen: set[Any]) -> None:
    for keyword in node.keywords:
        if keyword.arg == "status_code" and isinstance(keyword.value, ast.Constant) \
                and isinstance(keyword.value.value, int) and keyword.value.value < 400:
            facts.statuses.add(keyword.value.value)
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and _is_query_params(func.value) and node.args:
        name = _const_str(node.args[0])
        if name is not None:
            facts.query.setdefault(name, QueryParam(name, {"type": "string"}))
        return
    if not isinstance(func, ast.Name):
        return
    target = names.get(func.id)
    if func.id == "read_json" and len(node.args) >= 2 and isinstance(node.args[1], ast.Name):
        model = names.get(node.args[1].id)
        if isinstance(model, type) and issubclass(model, BaseModel):
            facts.body = model
        return
    if func.id == "query_int" and len(node.args) >= 4:
        _query_int(node, names, facts)
        return
    kwargs = {k.arg: k.value for k in node.keywords}
    status, code = _const(kwargs.get("status"), names), _const(kwargs.get("code"), names)
    if isinstance(target, type) and issubclass(target, AppError):
        if "status" in kwargs and not isinstance(status, int):
            return  # status computed at run time (a helper's parameter): its callers say which
        status = status if isinstance(status, int) else target.status
        if "code" in kwargs and not isinstance(code, str):
            facts.open_statuses.add(status)
        else:
            facts.errors.add((status, code if isinstance(code, str) else target.code))
        return
    if isinstance(target, FunctionType) or (isinstance(target, type) and issubclass(target, Exception)):
        _error_helper(node, target, names, facts)
    module = str(getattr(target, "__module__", ""))
    if isinstance(target, FunctionType) and module.startswith("server.") and module not in NOT_SCANNED:
        inner = unwrap(target)[0]
        _scan(inner, facts, depth=depth + 1, seen=seen, bindings=_bindings(node, inner, names, method=False))


def _error_helper(node: ast.Call, target: Any, names: dict[str, Any], facts: HandlerFacts) -> None:
    """An error built from `code`/`status` parameters: a helper (`refused("x", msg, status=400)`) or a
    service's own exception the route maps one to one (`RelationError(404, "friend_not_found", msg)`)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    if "code" not in signature.parameters:
        return
    positional = [_const(arg, names) for arg in node.args]
    keywords = {k.arg: _const(k.value, names) for k in node.keywords if k.arg}
    try:
        bound = signature.bind_partial(*positional, **keywords)
    except TypeError:
        return
    code = bound.arguments.get("code")
    parameter = signature.parameters.get("status")
    status = bound.arguments.get("status", parameter.default if parameter is not None else None)
    if isinstance(code, str) and isinstance(status, int) and status >= 400:
        facts.errors.add((status, code))


def _query_int(node: ast.Call, names: dict[str, Any], facts: HandlerFacts) -> None:
    name = _const_str(node.args[1])
    low, high = _const(node.args[2], names), _const(node.args[3], names)
    if name is None:
        return
    schema: dict[str, Any] = {"type": "integer"}
    if isinstance(low, int):
        schema["minimum"] = low
    if isinstance(high, int):
        schema["maximum"] = high
    default = node.args[4] if len(node.args) > 4 else next(
        (k.value for k in node.keywords if k.arg == "default"), None)
    default_value = _const(default, names)
    if isinstance(default_value, int):
        schema["default"] = default_value
    facts.query[name] = QueryParam(name, schema)


def _is_query_params(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "query_params"


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


_SAFE = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop,
         ast.Attribute)


def _const(node: ast.AST | None, names: dict[str, Any]) -> Any:
    """The value of a constant expression (`2**62`, `MAX_ID - 1`, `ValidationFailed.status`), else None."""
    if node is None:
        return None
    expression = ast.Expression(body=node)  # type: ignore[arg-type]
    if not all(isinstance(part, _SAFE) for part in ast.walk(expression)):
        return None
    try:
        return eval(compile(expression, "<openapi>", "eval"), {"__builtins__": {}}, names)  # noqa: S307
    except Exception:
        return None
