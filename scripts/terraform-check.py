#!/usr/bin/env python3
"""Offline checks of the Terraform code under terraform/ (no Terraform binary, no network).

Runs in the venv of scripts/testenv/tf-venv.sh, which has python-hcl2 (the parser used here).

  terraform-check.py lint DIR
      Parses every .tf file under DIR and prints one JSON object:
        {"files": [...], "problems": [{"kind", "file", "line"?, "message"}]}
      kinds: parse (a file python-hcl2 cannot parse), variable (no type or no description),
      output (no description), skip (a #checkov:skip without a reason), reference (var./local./
      module. reference to something not declared), module-call (a local module called with an
      unknown argument or without a required one).

  terraform-check.py inventory MODULE_DIR
      Prints the module's variables (name, type and default as written, required, description)
      and outputs (name, description) as JSON: the README tables are checked against it.

  terraform-check.py validate MODULE_DIR TABLE.json
      Evaluates every variable validation and resource precondition of the module with the
      table's values (else the defaults) and prints the ones that fail: [{"check", "message"}].

  terraform-check.py calls MODULE_DIR TABLE.json
      For each call of a local module: renders its arguments in the caller and runs the callee's
      validations and preconditions with them: {"<call>": [{"check", "message"}]}.

  terraform-check.py render MODULE_DIR EXPR TABLE.json
      Evaluates output.NAME or local.NAME of the module in MODULE_DIR and prints
      {"value": ...} (exit 0) or {"error": "..."} (exit 3). var.X comes from the table
      ("var.X": value) or else the variable's default; every other reference (resources, data
      sources, module outputs, path.*) must be in the table under its dotted name, e.g.
      "module.pool.autoscaling_group_name" or "data.aws_partition.current.partition": a
      reference the table does not know is an error, never a guess. Only the expression subset
      the modules use is supported (literals, templates, operators, conditionals, for
      expressions, and the functions in FUNCTIONS); anything else is an error too.
"""

import json
import math
import os
import re
import sys

import hcl2
from lark import Token, Tree

# ----------------------------------------------------------------------------- parsing


def tf_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".tf")]
    return out


def parse_tree(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    hcl2.loads(text)  # the library's full pipeline must accept the file, not only its grammar
    return hcl2.parses_to_tree(text)


def is_tree(n, *names):
    return isinstance(n, Tree) and (not names or n.data in names)


def kids(n):
    """Children that carry meaning (no newlines/comments, no punctuation tokens)."""
    return [c for c in n.children if not (is_tree(c, "new_line_or_comment") or isinstance(c, Token))]


def ident(n):
    """The name of an identifier/keyword node, or None."""
    if is_tree(n, "expr_term") and len(kids(n)) == 1:
        n = kids(n)[0]
    if is_tree(n, "identifier", "keyword"):
        return str(n.children[0])
    return None


def line_of(n):
    meta = getattr(n, "meta", None)
    return getattr(meta, "line", None) if meta is not None and not meta.empty else None


class Block:
    def __init__(self, node):
        parts = [c for c in node.children if not is_tree(c, "new_line_or_comment")]
        self.type = ident(parts[0])
        self.labels = []
        for p in parts[1:]:
            if isinstance(p, Token):
                break
            self.labels.append(ident(p) if ident(p) is not None else string_literal(p))
        body = next(c for c in node.children if is_tree(c, "body"))
        self.attrs = {}
        self.blocks = []
        for c in body.children:
            if is_tree(c, "attribute"):
                self.attrs[ident(c.children[0])] = c.children[-1]
            elif is_tree(c, "block"):
                self.blocks.append(Block(c))
        self.line = None


def string_literal(n):
    """The text of a plain string node (no interpolation), else None."""
    if is_tree(n, "expr_term"):
        n = kids(n)[0] if len(kids(n)) == 1 else n
    if not is_tree(n, "string"):
        return None
    out = ""
    for part in n.children:
        if is_tree(part, "string_part"):
            tok = part.children[0]
            if not isinstance(tok, Token) or tok.type != "STRING_CHARS":
                return None
            out += unescape(str(tok))
    return out


def top_blocks(tree):
    body = tree.children[0]
    out = []
    for c in body.children:
        if is_tree(c, "block"):
            b = Block(c)
            b.line = line_of(c) or first_line(c)
            out.append(b)
    return out


def first_line(n):
    for t in n.scan_values(lambda v: isinstance(v, Token)):
        return t.line
    return None


class Module:
    def __init__(self, directory):
        self.dir = directory
        self.variables = {}  # name -> Block
        self.locals = {}  # name -> expression node
        self.outputs = {}  # name -> Block
        self.calls = {}  # module name -> Block
        self.blocks = []  # (file, Block)
        for path in sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".tf")):
            for b in top_blocks(parse_tree(path)):
                self.blocks.append((path, b))
                if b.type == "variable":
                    self.variables[b.labels[0]] = b
                elif b.type == "output":
                    self.outputs[b.labels[0]] = b
                elif b.type == "locals":
                    self.locals.update(b.attrs)
                elif b.type == "module":
                    self.calls[b.labels[0]] = b


# ----------------------------------------------------------------------------- lint

SKIP_RE = re.compile(r"checkov:skip=([A-Za-z0-9_]+)(?::(.*))?")


def lint(root):
    problems = []
    files = tf_files(root)

    def add(kind, path, message, line=None):
        problems.append({"kind": kind, "file": os.path.relpath(path, root), "line": line, "message": message})

    dirs, broken_dirs = set(), set()
    for path in files:
        dirs.add(os.path.dirname(path))
        try:
            parse_tree(path)
        except Exception as e:  # noqa: BLE001 - any parser failure is the finding
            broken_dirs.add(os.path.dirname(path))
            add("parse", path, f"python-hcl2 cannot parse it: {str(e).splitlines()[0][:300]}")
        with open(path, encoding="utf-8") as f:
            for no, text in enumerate(f, 1):
                m = SKIP_RE.search(text)
                if m and len((m.group(2) or "").strip()) < 20:
                    add("skip", path, f"{m.group(1)} is skipped without a reason (#checkov:skip={m.group(1)}: why)", no)

    modules = {}
    # A folder with a file that does not parse is reported once, above, and not checked further.
    for d in sorted(dirs - broken_dirs):
        modules[d] = Module(d)

    for d, mod in modules.items():
        for path, b in mod.blocks:
            if b.type == "variable":
                name = b.labels[0]
                if "type" not in b.attrs:
                    add("variable", path, f"variable {name} has no type", b.line)
                desc = string_literal(b.attrs["description"]) if "description" in b.attrs else None
                if not desc or not desc.strip():
                    add("variable", path, f"variable {name} has no description", b.line)
            elif b.type == "output":
                desc = string_literal(b.attrs["description"]) if "description" in b.attrs else None
                if not desc or not desc.strip():
                    add("output", path, f"output {b.labels[0]} has no description", b.line)
            elif b.type == "module":
                src = string_literal(b.attrs.get("source")) if "source" in b.attrs else None
                if src and src.startswith("."):
                    target = os.path.normpath(os.path.join(d, src))
                    callee = modules.get(target)
                    if callee is None:
                        add("module-call", path, f"module {b.labels[0]}: {src} is no module here", b.line)
                        continue
                    meta = {"source", "version", "providers", "count", "for_each", "depends_on"}
                    for arg in b.attrs:
                        if arg not in meta and arg not in callee.variables:
                            add("module-call", path, f"module {b.labels[0]}: {src} has no variable {arg}", b.line)
                    for name, v in callee.variables.items():
                        if "default" not in v.attrs and name not in b.attrs:
                            add("module-call", path, f"module {b.labels[0]}: required variable {name} not given", b.line)
            for kind, name, rest, line in references(b):
                if kind == "var" and name not in mod.variables:
                    add("reference", path, f"var.{name} is not declared", line)
                elif kind == "local" and name not in mod.locals:
                    add("reference", path, f"local.{name} is not declared", line)
                elif kind == "module":
                    call = mod.calls.get(name)
                    src = string_literal(call.attrs.get("source")) if call and "source" in call.attrs else None
                    callee = modules.get(os.path.normpath(os.path.join(d, src))) if src else None
                    if call is None:
                        add("reference", path, f"module.{name} is not declared", line)
                    elif callee is not None and rest and rest not in callee.outputs:
                        add("reference", path, f"module.{name}.{rest}: {src} has no such output", line)
    return {"files": [os.path.relpath(p, root) for p in files], "problems": problems}


def references(block):
    """(kind, name, next attribute or None, line) of every var./local./module. traversal in a block."""
    out = []

    def walk(n):
        if not isinstance(n, Tree):
            return
        if n.data == "get_attr_expr_term":
            root, steps = traversal(n)
            if root in ("var", "local", "module") and steps and steps[0][0] == "attr":
                nxt = steps[1][1] if len(steps) > 1 and steps[1][0] == "attr" else None
                out.append((root, steps[0][1], nxt, first_line(n)))
        for c in n.children:
            walk(c)

    for node in block.attrs.values():
        walk(node)
    for b in block.blocks:
        out += references(b)
    return out


def traversal(n):
    """(root identifier, [(attr, name) | (index, node)]) of a pure traversal, else (None, [])."""
    steps = []
    while True:
        if is_tree(n, "expr_term") and len(kids(n)) == 1 and not any(isinstance(c, Token) for c in n.children):
            n = kids(n)[0]
            continue
        if is_tree(n, "get_attr_expr_term"):
            base, ga = n.children[0], n.children[1]
            name_node = kids(ga)[0]
            steps.insert(0, ("attr", ident(name_node) if ident(name_node) is not None else str(name_node.children[0])))
            n = base
            continue
        if is_tree(n, "index_expr_term"):
            base, idx = n.children[0], n.children[1]
            if is_tree(idx, "short_index"):
                steps.insert(0, ("index_int", int(str(idx.children[-1]))))
            else:
                steps.insert(0, ("index", kids(idx)[0]))
            n = base
            continue
        if is_tree(n, "identifier"):
            return str(n.children[0]), steps
        return None, []


# ----------------------------------------------------------------------------- evaluation


class EvalError(Exception):
    pass


class UnknownReference(EvalError):
    """A reference the table does not give: never hidden by can()."""


ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            e = s[i + 1]
            if e in ESCAPES:
                out.append(ESCAPES[e])
                i += 2
                continue
            if e == "u":
                out.append(chr(int(s[i + 2 : i + 6], 16)))
                i += 6
                continue
            if e == "U":
                out.append(chr(int(s[i + 2 : i + 10], 16)))
                i += 10
                continue
            raise EvalError(f"unknown escape \\{e}")
        out.append(c)
        i += 1
    return "".join(out)


def tf_str(v, where):
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return num_str(v)
    raise EvalError(f"{where}: cannot use {type(v).__name__} {json.dumps(v)[:80]} in a string")


def num_str(v):
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def norm_num(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def tf_jsonencode(v):
    # Terraform's jsonencode: compact, object keys sorted, and <, >, & escaped as \u003c etc.
    text = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _keys(m):
    if not isinstance(m, dict):
        raise EvalError("keys/values need a map")
    return sorted(m)


def _lookup(m, k, *default):
    if not isinstance(m, dict):
        raise EvalError("lookup needs a map")
    if k in m:
        return m[k]
    if default:
        return default[0]
    raise EvalError(f"lookup: no key {k!r}")


def _one(v):
    if not isinstance(v, list) or len(v) > 1:
        raise EvalError("one() needs a list of at most one element")
    return v[0] if v else None


def _merge(*ms):
    out = {}
    for m in ms:
        if m is None:
            continue
        if not isinstance(m, dict):
            raise EvalError("merge needs maps or objects")
        out.update(m)
    return out


def _concat(*ls):
    out = []
    for x in ls:
        if not isinstance(x, list):
            raise EvalError("concat needs lists")
        out += x
    return out


def _flatten(v):
    out = []
    for x in v:
        out += _flatten(x) if isinstance(x, list) else [x]
    return out


def _format(fmt, *args):
    it = iter(args)

    def sub(m):
        spec = m.group(1)
        if spec == "%":
            return "%"
        v = next(it)
        if spec == "s":
            return tf_str(v, "format")
        if spec == "d":
            return str(int(v))
        if spec == "q":
            return json.dumps(tf_str(v, "format"))
        raise EvalError(f"format: %{spec} is not supported here")

    return re.sub(r"%([sdq%])", sub, fmt)


def _coalesce(*vs):
    for v in vs:
        if v is not None and v != "":
            return v
    raise EvalError("coalesce: no non-null argument")


def _toset(v):
    if not isinstance(v, list):
        raise EvalError("toset needs a list")
    return sorted(set(v), key=lambda x: (str(type(x)), x))


def _distinct(v):
    out = []
    for x in v:
        if x not in out:
            out.append(x)
    return out


def _regex(pattern, s):
    # Terraform's RE2 and Python's re agree on the patterns used here (no backreferences, no
    # lookaround in RE2 anyway). Like Terraform: the first match, an error when there is none.
    m = re.search(pattern, s)
    if m is None:
        raise EvalError(f"regex: {pattern!r} does not match {s!r}")
    if m.re.groupindex:
        return m.groupdict()
    return list(m.groups()) if m.re.groups else m.group(0)


FUNCTIONS = {
    "regex": _regex,
    "floor": lambda v: math.floor(v),
    "ceil": lambda v: math.ceil(v),
    "jsonencode": tf_jsonencode,
    "jsondecode": json.loads,
    "merge": _merge,
    "concat": _concat,
    "flatten": _flatten,
    "length": lambda v: len(v),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "trimspace": lambda s: s.strip(),
    "tostring": lambda v: None if v is None else tf_str(v, "tostring"),
    "tonumber": lambda v: None if v is None else norm_num(float(v)),
    "tolist": lambda v: list(v),
    "toset": _toset,
    "distinct": _distinct,
    "compact": lambda v: [x for x in v if x not in (None, "")],
    "contains": lambda l, x: x in l,
    "join": lambda sep, l: sep.join(tf_str(x, "join") for x in l),
    "split": lambda sep, s: s.split(sep),
    "format": _format,
    "lookup": _lookup,
    "keys": lambda m: _keys(m),
    "values": lambda m: [m[k] for k in _keys(m)],
    "coalesce": _coalesce,
    "one": _one,
    "startswith": lambda s, p: s.startswith(p),
    "endswith": lambda s, p: s.endswith(p),
    "alltrue": lambda l: all(l),
    "anytrue": lambda l: any(l),
    "nonsensitive": lambda v: v,
    "sensitive": lambda v: v,
    "sort": lambda l: sorted(l),
    "min": lambda *a: min(a),
    "max": lambda *a: max(a),
}


class Evaluator:
    def __init__(self, module, table):
        self.mod = module
        self.table = table
        self.local_cache = {}
        self.in_progress = set()

    # -- references
    def var(self, name):
        key = f"var.{name}"
        if key in self.table:
            return self.table[key]
        v = self.mod.variables.get(name)
        if v is None:
            raise EvalError(f"var.{name} is not declared in {self.mod.dir}")
        if "default" not in v.attrs:
            raise UnknownReference(f"var.{name} has no default and the table gives no value")
        return self.eval(v.attrs["default"], {})

    def local(self, name):
        if name in self.local_cache:
            return self.local_cache[name]
        if name not in self.mod.locals:
            raise EvalError(f"local.{name} is not declared in {self.mod.dir}")
        if name in self.in_progress:
            raise EvalError(f"local.{name} refers to itself")
        self.in_progress.add(name)
        try:
            v = self.eval(self.mod.locals[name], {})
        finally:
            self.in_progress.discard(name)
        self.local_cache[name] = v
        return v

    def reference(self, root, steps, scope):
        if root in scope:
            return self.apply(scope[root], steps, scope, root)
        if root in ("var", "local"):
            if not steps or steps[0][0] != "attr":
                raise EvalError(f"{root} needs an attribute")
            base = self.var(steps[0][1]) if root == "var" else self.local(steps[0][1])
            return self.apply(base, steps[1:], scope, f"{root}.{steps[0][1]}")
        names = [root]
        for kind, val in steps:
            if kind != "attr":
                break
            names.append(val)
        for n in range(len(names), 0, -1):
            key = ".".join(names[:n])
            if key in self.table:
                return self.apply(self.table[key], steps[n - 1 :], scope, key)
        raise UnknownReference(f"unknown reference {'.'.join(names)}: not in the table")

    def apply(self, value, steps, scope, label):
        for kind, val in steps:
            if kind == "attr":
                if not isinstance(value, dict) or val not in value:
                    raise EvalError(f"{label} has no attribute {val}")
                value = value[val]
                label += f".{val}"
            else:
                key = val if kind == "index_int" else self.eval(val, scope)
                if isinstance(value, list):
                    if not isinstance(key, (int, float)) or not 0 <= int(key) < len(value):
                        raise EvalError(f"{label}[{key!r}]: index out of range")
                    value = value[int(key)]
                elif isinstance(value, dict):
                    if key not in value:
                        raise EvalError(f"{label}[{key!r}]: no such key")
                    value = value[key]
                else:
                    raise EvalError(f"{label} cannot be indexed")
                label += f"[{key!r}]"
        return value

    # -- expressions
    def eval(self, n, scope):
        if isinstance(n, Token):
            raise EvalError(f"unexpected token {n!r}")
        d = n.data
        if d in ("expr_term", "get_attr_expr_term", "index_expr_term"):
            root, steps = traversal(n)
            if root is not None:
                return self.reference(root, steps, scope)
            if d == "expr_term":
                inner = kids(n)
                if len(inner) != 1:
                    raise EvalError("unexpected expression shape")
                return self.eval(inner[0], scope)
            base = self.eval(n.children[0], scope)
            step = n.children[1]
            if d == "get_attr_expr_term":
                return self.apply(base, [("attr", ident(kids(step)[0]))], scope, "value")
            if is_tree(step, "short_index"):
                return self.apply(base, [("index_int", int(str(step.children[-1])))], scope, "value")
            return self.apply(base, [("index", kids(step)[0])], scope, "value")
        if d == "identifier":
            return self.reference(str(n.children[0]), [], scope)
        if d == "literal_value":
            return {"true": True, "false": False, "null": None}[str(n.children[0])]
        if d == "int_lit":
            return int(str(n.children[0]))
        if d == "float_lit":
            return norm_num(float(str(n.children[0])))
        if d == "string":
            return self.template(n, scope)
        if d == "tuple":
            return [self.eval(c, scope) for c in kids(n)]
        if d == "object":
            out = {}
            for el in kids(n):
                key_node = kids(el.children[0])[0] if kids(el.children[0]) else el.children[0]
                name = ident(el.children[0].children[0]) if is_tree(el.children[0].children[0], "keyword") else ident(key_node)
                key = name if name is not None else self.eval(key_node, scope)
                if not isinstance(key, str):
                    raise EvalError(f"object key {key!r} is not a string")
                out[key] = self.eval(el.children[-1], scope)
            return out
        if d == "conditional":
            parts = kids(n)
            cond = self.eval(parts[0], scope)
            if not isinstance(cond, bool):
                raise EvalError(f"condition is {cond!r}, not a bool")
            return self.eval(parts[1] if cond else parts[2], scope)
        if d == "binary_op":
            return self.binary(n, scope)
        if d == "unary_op":
            op = str(n.children[0])
            v = self.eval(n.children[1], scope)
            if op == "!":
                if not isinstance(v, bool):
                    raise EvalError("! needs a bool")
                return not v
            return -v
        if d == "function_call":
            return self.call(n, scope)
        if d in ("for_tuple_expr", "for_object_expr"):
            return self.for_expr(n, scope)
        raise EvalError(f"{d} is not supported by this offline renderer")

    def template(self, n, scope):
        parts = [p for p in n.children if is_tree(p, "string_part")]
        if len(parts) == 1 and is_tree(parts[0].children[0], "interpolation"):
            return self.eval(kids(parts[0].children[0])[0], scope)
        out = ""
        for p in parts:
            c = p.children[0]
            if isinstance(c, Token):
                if c.type == "STRING_CHARS":
                    out += unescape(str(c))
                elif c.type == "ESCAPED_INTERPOLATION":
                    out += str(c)[1:]
                elif c.type == "ESCAPED_DIRECTIVE":
                    out += str(c)[1:]
                else:
                    raise EvalError(f"{c.type} in a string is not supported")
            elif is_tree(c, "interpolation"):
                v = self.eval(kids(c)[0], scope)
                if v is None:
                    raise EvalError("null in a string template")
                out += tf_str(v, "template")
            else:
                raise EvalError(f"template directive {c.data} is not supported")
        return out

    def binary(self, n, scope):
        left = self.eval(n.children[0], scope)
        term = next(c for c in n.children[1:] if is_tree(c, "binary_term"))
        op = str(term.children[0].children[0])
        if op == "&&" or op == "||":
            if not isinstance(left, bool):
                raise EvalError(f"{op} needs bools")
            if op == "&&" and not left:
                return False
            if op == "||" and left:
                return True
        right = self.eval(kids(term)[-1], scope)
        if op in ("&&", "||"):
            if not isinstance(right, bool):
                raise EvalError(f"{op} needs bools")
            return right
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        nums = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (left, right))
        if not nums:
            raise EvalError(f"{op} needs numbers, got {left!r} and {right!r}")
        return norm_num(
            {
                "<": lambda: left < right,
                ">": lambda: left > right,
                "<=": lambda: left <= right,
                ">=": lambda: left >= right,
                "+": lambda: left + right,
                "-": lambda: left - right,
                "*": lambda: left * right,
                "/": lambda: left / right,
                "%": lambda: left % right,
            }[op]()
        )

    def call(self, n, scope):
        name = ident(n.children[0])
        if any(isinstance(c, Token) and c.type == "COLONS" for c in n.children):
            raise EvalError("provider functions are not supported")
        if name == "can":
            args_node = next((c for c in n.children if is_tree(c, "arguments")), None)
            try:
                self.eval(kids(args_node)[0], scope)
                return True
            except UnknownReference:
                raise
            except EvalError:
                return False
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise EvalError(f"function {name}() is not supported by this offline renderer")
        args_node = next((c for c in n.children if is_tree(c, "arguments")), None)
        if args_node is not None and any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in args_node.children):
            raise EvalError("argument expansion (...) is not supported")
        args = [self.eval(a, scope) for a in kids(args_node)] if args_node is not None else []
        try:
            return fn(*args)
        except EvalError:
            raise
        except Exception as e:  # noqa: BLE001 - a wrong argument is the expression's error
            raise EvalError(f"{name}(): {e}") from e

    def for_expr(self, n, scope):
        intro = next(c for c in n.children if is_tree(c, "for_intro"))
        names = [str(c.children[0]) for c in intro.children if is_tree(c, "identifier")]
        coll = self.eval(kids(intro)[-1], scope)
        cond_node = next((c for c in n.children if is_tree(c, "for_cond")), None)
        body = [c for c in kids(n) if not is_tree(c, "for_intro", "for_cond")]
        grouping = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in n.children)
        if isinstance(coll, dict):
            items = [(k, coll[k]) for k in sorted(coll)]
        elif isinstance(coll, list):
            items = list(enumerate(coll))
        else:
            raise EvalError(f"for over {type(coll).__name__}")
        out_list, out_map = [], {}
        for k, v in items:
            inner = dict(scope)
            if len(names) == 1:
                inner[names[0]] = v
            else:
                inner[names[0]], inner[names[1]] = k, v
            if cond_node is not None:
                c = self.eval(kids(cond_node)[-1], inner)
                if not isinstance(c, bool):
                    raise EvalError("for condition is not a bool")
                if not c:
                    continue
            if n.data == "for_tuple_expr":
                out_list.append(self.eval(body[0], inner))
            else:
                key = self.eval(body[0], inner)
                val = self.eval(body[1], inner)
                if grouping:
                    out_map.setdefault(key, []).append(val)
                elif key in out_map:
                    raise EvalError(f"for expression makes the key {key!r} twice")
                else:
                    out_map[key] = val
        return out_list if n.data == "for_tuple_expr" else out_map


def checks_of(mod):
    """(what, condition node, error message node, block) of every variable validation and precondition."""
    out = []
    for _path, b in mod.blocks:
        if b.type == "variable":
            for v in b.blocks:
                if v.type == "validation":
                    out.append((f"var.{b.labels[0]}", v.attrs["condition"], v.attrs.get("error_message"), b))
        elif b.type in ("resource", "data"):
            for lc in b.blocks:
                if lc.type == "lifecycle":
                    for pre in lc.blocks:
                        if pre.type == "precondition":
                            out.append((".".join(b.labels) + " precondition", pre.attrs["condition"], pre.attrs.get("error_message"), b))
    return out


def instances(ev, block):
    """How many instances a resource has (count / for_each); a precondition holds only for those."""
    if "count" in block.attrs:
        return ev.eval(block.attrs["count"], {})
    if "for_each" in block.attrs:
        return len(ev.eval(block.attrs["for_each"], {}))
    return 1


def validate(module_dir, table):
    """Evaluates every validation and precondition; a required variable the table lacks fails too."""
    mod = Module(module_dir)
    ev = Evaluator(mod, table)
    failures = []
    for what, cond, msg, block in checks_of(mod):
        try:
            if block.type != "variable" and instances(ev, block) == 0:
                continue
            ok = ev.eval(cond, {})
            if ok is not True:
                failures.append({"check": what, "message": string_literal(msg) if msg is not None else "(no message)"})
        except EvalError as e:
            failures.append({"check": what, "message": f"cannot evaluate: {e}"})
    return failures


def calls(module_dir, table):
    """Each local module call: its arguments rendered in the caller, then the callee's checks."""
    mod = Module(module_dir)
    ev = Evaluator(mod, table)
    out = {}
    for name, b in sorted(mod.calls.items()):
        src = string_literal(b.attrs["source"])
        callee_dir = os.path.normpath(os.path.join(module_dir, src))
        callee_table = {}
        failures = []
        for arg, node in b.attrs.items():
            if arg in ("source", "version", "providers", "count", "for_each", "depends_on"):
                continue
            try:
                callee_table[f"var.{arg}"] = ev.eval(node, {})
            except EvalError as e:
                failures.append({"check": f"argument {arg}", "message": f"cannot evaluate: {e}"})
        # what only exists after an apply (data sources) comes from the caller's table
        callee_table.update({k: v for k, v in table.items() if not k.startswith(("var.", "module.", "local."))})
        failures += validate(callee_dir, callee_table)
        out[name] = failures
    return out


def render(module_dir, expr, table):
    mod = Module(module_dir)
    ev = Evaluator(mod, table)
    kind, _, name = expr.partition(".")
    if kind == "output":
        if name not in mod.outputs:
            raise EvalError(f"no output {name} in {module_dir}")
        return ev.eval(mod.outputs[name].attrs["value"], {})
    if kind == "local":
        return ev.local(name)
    raise EvalError("EXPR must be output.NAME or local.NAME")


def source_of(node, text):
    """The source text of a node, whitespace collapsed."""
    toks = list(node.scan_values(lambda v: isinstance(v, Token)))
    if not toks:
        return ""
    return " ".join(text[toks[0].start_pos : toks[-1].end_pos].split())


def inventory(directory):
    """Variables (name, type, default, required, description) and outputs (name, description) of one module."""
    out = {"variables": [], "outputs": []}
    for path in sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".tf")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for b in top_blocks(parse_tree(path)):
            desc = string_literal(b.attrs["description"]) if "description" in b.attrs else None
            if b.type == "variable":
                out["variables"].append(
                    {
                        "name": b.labels[0],
                        "type": source_of(b.attrs["type"], text) if "type" in b.attrs else None,
                        "default": source_of(b.attrs["default"], text) if "default" in b.attrs else None,
                        "required": "default" not in b.attrs,
                        "description": desc,
                    }
                )
            elif b.type == "output":
                out["outputs"].append({"name": b.labels[0], "description": desc})
    return out


def main(argv):
    if len(argv) == 3 and argv[1] == "inventory":
        print(json.dumps(inventory(argv[2]), indent=1))
        return 0
    if len(argv) == 3 and argv[1] == "lint":
        print(json.dumps(lint(argv[2]), indent=1))
        return 0
    if len(argv) == 4 and argv[1] in ("validate", "calls"):
        with open(argv[3], encoding="utf-8") as f:
            table = json.load(f)
        print(json.dumps((validate if argv[1] == "validate" else calls)(argv[2], table)))
        return 0
    if len(argv) == 5 and argv[1] == "render":
        with open(argv[4], encoding="utf-8") as f:
            table = json.load(f)
        try:
            print(json.dumps({"value": render(argv[2], argv[3], table)}))
            return 0
        except EvalError as e:
            print(json.dumps({"error": str(e)}))
            return 3
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
