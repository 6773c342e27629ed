"""Argument handling shared by the optimizer constructors.

- `checked_keywords(public_name)`: a misspelled keyword raises a TypeError naming the public
  function and the closest valid keywords (`mo.muon: unexpected keyword argument 'adam_lr'; did
  you mean 'adam_learning_rate'?`). `inspect.signature` still sees the real signature, so
  `optax.inject_hyperparams` works on the decorated constructor.
- Under `optax.inject_hyperparams`, float hyperparameters arrive as (traced) arrays: only Python
  numbers are validated (`is_python_number`), and `hyper(value, like)` casts an array
  hyperparameter to a leaf's dtype so a float64 one does not promote float32 parameters.
- `optimizer_constructor(public_name, **defaults)`: the same check, plus the AdamW-branch
  keywords every orthogonalized optimizer shares (ADAMW_KEYWORDS: adam_learning_rate, adam_b1,
  adam_b2, adam_eps, adam_weight_decay, adam_nesterov; and cautious_weight_decay, hyperball)
  appended to the constructor's visible signature and handed to it as one dict `adamw`, so
  they are declared once.
- Structural integers (Newton-Schulz steps, iteration counts) fix the program's shape; they
  default to None (so inject_hyperparams leaves them static) and `static_int` gives a clear
  error when one arrives as an array.
"""
from __future__ import annotations

import difflib
import functools
import inspect

import jax.numpy as jnp


def _abbreviations(name: str) -> set[str]:
    """'adam_learning_rate' -> {'alr', 'adam_lr', 'adam_learning_r'}: trailing words by initials."""
    words = name.split("_")
    return {"_".join(words[:i] + ["".join(w[:1] for w in words[i:])]) for i in range(len(words))}


def keyword_suggestions(key: str, names) -> list[str]:
    """Valid keywords close to `key`: by initials ('lr', 'adam_wd') if any, else by spelling."""
    names = list(names)
    by_initials = [n for n in names if key in _abbreviations(n)]
    return by_initials or difflib.get_close_matches(key, names, n=3, cutoff=0.5)


def checked_keywords(public_name: str):
    """Decorator: unknown keywords raise TypeError(f"{public_name}: unexpected keyword ...")."""

    def decorate(fn):
        names = tuple(inspect.signature(fn).parameters)

        @functools.wraps(fn)
        def constructor(*args, **kwargs):
            for key in kwargs:
                if key not in names:
                    hints = keyword_suggestions(key, names)
                    hint = f"; did you mean {' or '.join(map(repr, hints))}?" if hints else ""
                    raise TypeError(f"{public_name}: unexpected keyword argument {key!r}{hint}")
            return fn(*args, **kwargs)

        return constructor

    return decorate


# The AdamW branch's keywords and their defaults (a constructor may override the defaults).
ADAMW_KEYWORDS = {"adam_learning_rate": 3e-4, "adam_b1": 0.9, "adam_b2": 0.95, "adam_eps": 1e-8,
                  "adam_weight_decay": 0.0, "adam_nesterov": False,
                  # and the step rules every orthogonalized optimizer shares (transforms.step_rules)
                  "cautious_weight_decay": False, "hyperball": False}


def optimizer_constructor(public_name: str, **defaults):
    """Decorator for fn(..., adamw): its public signature gains the ADAMW_KEYWORDS (with
    `defaults` overriding theirs), passed to fn as the dict `adamw`; keywords are checked."""
    adamw_defaults = {**ADAMW_KEYWORDS, **defaults}

    def decorate(fn):
        inner = inspect.signature(fn)
        params = [p for p in inner.parameters.values() if p.name != "adamw"]
        params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in adamw_defaults.items()]
        public = inner.replace(parameters=params)

        @functools.wraps(fn)
        def constructor(*args, **kwargs):
            bound = public.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            adamw = {k: arguments.pop(k) for k in adamw_defaults}
            return fn(**arguments, adamw=adamw)

        constructor.__signature__ = public
        return checked_keywords(public_name)(constructor)

    return decorate


def is_python_number(value) -> bool:
    """True for int/float (not bool, not arrays or tracers): the values we validate."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def hyper(value, like):
    """A hyperparameter in the dtype of the array `like`: arrays are cast, Python numbers are
    returned as they are (weakly typed, they already follow the array's dtype)."""
    return value if is_python_number(value) else jnp.asarray(value, like.dtype)


def static_int(public_name: str, name: str, value, default: int) -> int:
    """`value` (None -> default) as a Python int >= 1; TypeError for arrays (e.g. from
    optax.inject_hyperparams: pass static_args=(name,) there)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{public_name}: {name} must be a Python int (it fixes the computation's structure), got "
            f"{type(value).__name__}; under optax.inject_hyperparams pass static_args=({name!r},)"
        )
    if value < 1:
        raise ValueError(f"{public_name}: {name} must be a positive int, got {value!r}")
    return value
