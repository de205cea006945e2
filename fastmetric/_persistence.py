"""Safe model files: :func:`save` and :func:`load`.

A pickled model is a program: loading it runs whatever code the file names,
so a model file from someone else is as dangerous as their script.  The
format written here holds data only, and loading it never executes anything
from the file.

Format (``fastmetric-model``, version 1)
----------------------------------------
A zip archive written by :func:`numpy.savez` (the ``.npz`` layout), with

* ``header``: a ``uint8`` array holding UTF-8 JSON::

      {"format": "fastmetric-model", "format_version": 1,
       "fastmetric_version": "0.1.0", "class": "LDML_Supervised",
       "params": {...}, "attributes": {...}, "set_output": {"transform": "pandas"}}

  ``class`` is one of fastmetric's public estimator classes (an allow-list:
  any other name is refused); ``params`` is ``get_params()``; ``attributes``
  are the fitted attributes (every instance attribute whose name ends in
  ``_``); ``set_output``, present only when ``model.set_output(transform=...)``
  was called, is that configuration (scikit-learn keeps it in the instance's
  ``_sklearn_output_config``, which ``clone`` and pickle keep too): a JSON
  object whose only key is ``"transform"`` and whose value is ``"default"``,
  ``"pandas"`` or ``"polars"``, replayed on load through ``set_output``.
  Files without it (every file written before fastmetric kept it) load with
  the default configuration, as they always did; a fastmetric that predates
  the key ignores it, so the format version stays 1.
* ``array_0``, ``array_1``, ...: the arrays among those values, as ``.npy``
  members of numeric, boolean or fixed-width string dtype (never object
  dtype), read back with ``allow_pickle=False``.

Values are encoded as JSON: ``None``, booleans, integers, strings and finite
floats as themselves (Python floats round-trip exactly through their
``repr``), and everything else as a one-key object that names its kind:
``{"__float__": "nan"}`` (non-finite floats), ``{"__array__": "array_3"}``
(an array; ``{"__array__": ..., "object_str": true}`` for an object array of
strings such as ``feature_names_in_``, stored as a string array),
``{"__scalar__": "array_4"}`` (a numpy scalar, stored as a 0-d array so that
its dtype is kept), ``{"__tuple__": [...]}`` and ``{"__dict__": [[key,
value], ...]}``; JSON lists are lists.

What cannot be stored is refused at save time with a TypeError naming it:
a callable parameter (``callback``, a callable ``preprocessor``), an
estimator given as ``init``, or a fitted attribute of another type.  A
callback only acts during ``fit`` but is code, which this format does not
hold: set it to ``None`` (``model.set_params(callback=None)``) before
saving.  Any other ``set_output`` configuration (``set_output`` stores
any value, which scikit-learn's ``transform`` then refuses; another key
can only be assigned by hand) is refused at save time with a ValueError
naming it, so that save never writes a file that load refuses.
Private state (attributes starting with ``_``, such as the optimiser state
that ``LDML.partial_fit`` continues from) is not saved: a loaded model
predicts exactly as the saved one, and a new ``fit`` starts afresh.

:func:`load` refuses, with a :class:`ModelFileError` (a ValueError), a file that is not a zip archive of
this format, a newer format version, a class outside the allow-list, a
parameter the class does not have, an attribute name that is not a fitted
attribute's (``name_``), a missing or unexpected archive member, and any
member that would need pickle (an object array), a value whose encoding is
malformed (a marker with content of the wrong type, an unhashable or
repeated dict key, nesting deeper than 32 levels), and a fitted model that
lacks, or holds unsound values of, the attributes its predictions read
(``components_`` and ``n_features_in_`` for every learner, ``threshold_``
for the pair classifiers, ``bias_`` for LDML, ``cluster_centers_`` for
ClusterLDML), and a ``set_output`` configuration other than the one
described above.  It then builds the estimator with its own constructor,
sets the attributes and calls ``set_output``: no code from the file runs.

The scikit-learn ecosystem's other safe route, ``skops.io``, also works for
every fastmetric estimator: ``skops.io.dump(model, path)``, then
``skops.io.load(path, trusted=[...])`` trusting the one type that
``skops.io.get_untrusted_types(file=path)`` lists, the estimator's class
(named by its module path, e.g. ``fastmetric._learners.ldml.LDML``).
"""
import json
import math
import numbers
import os
import re
import struct
import sys
import zipfile
import zlib

import numpy as np

from fastmetric._core.pairs import PairsClassifierMixin
from fastmetric._learners.cluster_ldml import ClusterLDML
from fastmetric._learners.covariance import Covariance
from fastmetric._learners.itml import ITML, ITML_Supervised
from fastmetric._learners.ldml import LDML, LDML_Supervised
from fastmetric._learners.lfda import LFDA
from fastmetric._learners.lmnn import LMNN
from fastmetric._learners.lsml import LSML, LSML_Supervised
from fastmetric._learners.mlkr import MLKR
from fastmetric._learners.mmc import MMC, MMC_Supervised
from fastmetric._learners.nca import NCA
from fastmetric._learners.rca import RCA, RCA_Supervised
from fastmetric._learners.scml import SCML, SCML_Supervised
from fastmetric._learners.sdml import SDML, SDML_Supervised

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ModelFileError", "load", "save"]

FORMAT_NAME = "fastmetric-model"
FORMAT_VERSION = 1

# The allow-list: the only classes a file can name.
_CLASSES = {cls.__name__: cls for cls in (
    ClusterLDML, Covariance, ITML, ITML_Supervised, LDML, LDML_Supervised, LFDA, LMNN,
    LSML, LSML_Supervised, MLKR, MMC, MMC_Supervised, NCA, RCA, RCA_Supervised, SCML,
    SCML_Supervised, SDML, SDML_Supervised,
)}



class ModelFileError(ValueError):
    """A file that :func:`load` refuses: not a fastmetric model file, a newer
    format version, a class outside the allow-list, or a file that is
    incomplete or was tampered with.  A ValueError."""


_HEADER = "header"
# What reading a damaged archive can raise (bad CRC, cut data, an unknown
# compression method, a broken .npy header): all mean a corrupt file.
_CORRUPT = (ValueError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, OSError,
            KeyError, struct.error)
# A fitted attribute's name: a public identifier ending in "_" (never a dunder
# such as __class__, which would replace the object's type).
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_$")
_MAX_DEPTH = 32
# The set_output configuration: the header key, the methods scikit-learn's
# set_output configures (its only keyword) and the containers its transform
# accepts (sklearn.utils._set_output: "default" plus the pandas and polars
# adapters).  A fixed list, so that what a file may hold does not depend on
# the scikit-learn or the dataframe libraries installed; None is not among
# them: set_output(transform=None) means "unchanged" and stores nothing, and
# a None stored by hand makes scikit-learn's transform raise.
_SET_OUTPUT = "set_output"
_OUTPUT_METHODS = ("transform",)
_OUTPUT_CONTAINERS = ("default", "pandas", "polars")
# How much of a value from a tampered file an error message quotes.
_PREVIEW_CHARS = 80


def _preview(value):
    """A short ``repr`` of ``value`` for an error message.

    Parameters
    ----------
    value : object
        A value read from a model file, possibly huge.

    Returns
    -------
    str
        ``repr(value)``, cut to about 80 characters.

    Examples
    --------
    >>> _preview([1, 2])
    '[1, 2]'
    >>> len(_preview("x" * 1000)) <= 80
    True
    """
    text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS - 5] + " ...)"
    return text


class _Encoder:
    """Turns values into JSON with the arrays set aside as archive members."""

    def __init__(self):
        self.arrays = {}

    def _store(self, arr):
        key = f"array_{len(self.arrays)}"
        self.arrays[key] = arr
        return key

    def encode(self, value, what, depth=0):
        if depth > _MAX_DEPTH:
            raise ValueError(f"cannot save {what}: it is nested more than {_MAX_DEPTH} deep.")
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.ndarray):
            return self._encode_array(value, what)
        if isinstance(value, np.generic):
            if value.dtype.kind not in "biufcSU":
                raise TypeError(f"cannot save {what}: a numpy scalar of dtype {value.dtype}.")
            return {"__scalar__": self._store(np.asarray(value))}
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, what, depth + 1) for v in value]}
        if isinstance(value, list):
            return [self.encode(v, what, depth + 1) for v in value]
        if isinstance(value, dict):
            return {"__dict__": [[self.encode(k, what, depth + 1), self.encode(v, what, depth + 1)]
                                 for k, v in value.items()]}
        raise TypeError(
            f"cannot save {what}: a value of type {type(value).__name__} is not data that "
            "the fastmetric model format holds (arrays, numbers, strings, booleans, None, "
            "and lists, tuples and dicts of them)."
        )

    def _encode_array(self, arr, what):
        if arr.dtype.kind == "O":
            # feature_names_in_ and string class labels are object arrays of str.
            if all(isinstance(v, str) for v in arr.flat):
                return {"__array__": self._store(arr.astype(str)), "object_str": True}
            raise TypeError(f"cannot save {what}: an object array holding values other "
                             "than strings.")
        if arr.dtype.kind not in "biufcSU" or arr.dtype.fields is not None:
            raise TypeError(f"cannot save {what}: an array of dtype {arr.dtype}.")
        return {"__array__": self._store(arr)}


class _Decoder:
    """Turns the header's JSON back into values, reading arrays from the archive.

    Every departure from what :class:`_Encoder` writes (a marker whose
    content has the wrong type, a member that is missing, a dict key that
    cannot be one, nesting beyond the limit) is a :class:`ModelFileError`
    naming the value.
    """

    def __init__(self, archive):
        self.archive = archive
        self.used = set()

    def _array(self, key, what):
        if not isinstance(key, str) or key == _HEADER:
            raise ModelFileError(f"the model file is invalid: {what} names the member "
                                 f"{_preview(key)}.")
        if key not in self.archive.files:
            raise ModelFileError(f"the model file is incomplete: member {key!r} ({what}) is "
                             "missing.")
        arr = _read_member(self.archive, key, what)
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biufcSU":
            raise ModelFileError(f"the model file is refused: member {key!r} ({what}) is not a "
                             "plain numeric or string array.")
        self.used.add(key)
        return arr

    def decode(self, value, what, depth=0):
        if depth > _MAX_DEPTH:
            raise ModelFileError(f"the model file is invalid: {what} is nested too deep "
                                 f"(more than {_MAX_DEPTH} levels).")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, what, depth + 1) for v in value]
        if not isinstance(value, dict) or len(value) not in (1, 2):
            raise ModelFileError(f"the model file is invalid: {what} holds {_preview(value)}.")
        if "__array__" in value:
            arr = self._array(value["__array__"], what)
            if set(value) == {"__array__"}:
                return arr
            if set(value) != {"__array__", "object_str"} or value["object_str"] is not True:
                raise ModelFileError(f"the model file is invalid: {what} holds "
                                     f"{_preview(value)}.")
            # save writes object arrays of str as unicode arrays, and only those.
            if arr.dtype.kind != "U":
                raise ModelFileError(f"the model file is invalid: {what} is marked object_str "
                                     f"but is not a string array (dtype {arr.dtype}).")
            return arr.astype(object)
        if len(value) != 1:
            raise ModelFileError(f"the model file is invalid: {what} holds {_preview(value)}.")
        (tag, content), = value.items()
        if tag == "__scalar__":
            arr = self._array(content, what)
            if arr.ndim != 0:
                raise ModelFileError(f"the model file is invalid: {what} is a scalar of shape "
                                     f"{arr.shape}.")
            return arr[()]
        if tag == "__float__" and isinstance(content, str) and content in ("nan", "inf", "-inf"):
            return float(content)
        if tag == "__tuple__" and isinstance(content, list):
            return tuple(self.decode(v, what, depth + 1) for v in content)
        if tag == "__dict__" and isinstance(content, list):
            return self._dict(content, what, depth)
        raise ModelFileError(f"the model file is invalid: {what} holds {_preview(value)}.")

    def _dict(self, items, what, depth):
        """The dict encoded as ``items``, a list of ``[key, value]`` pairs.

        Parameters
        ----------
        items : list
            The content of a ``{"__dict__": ...}`` marker.
        what : str
            The parameter or attribute being read, for messages.
        depth : int
            The nesting depth of the marker.

        Returns
        -------
        dict

        Raises
        ------
        ModelFileError
            An item is not a pair, a key decodes to an unhashable value
            (a list, dict or array, or a tuple holding one), or a key
            comes twice.
        """
        out = {}
        for item in items:
            if not (isinstance(item, list) and len(item) == 2):
                raise ModelFileError(f"the model file is invalid: {what} holds the dict item "
                                     f"{_preview(item)}, not a [key, value] pair.")
            key = self.decode(item[0], what, depth + 1)
            try:
                hash(key)
            except TypeError:
                raise ModelFileError(f"the model file is invalid: {what} has a dict key "
                                     f"{_preview(key)} that is unhashable.") from None
            if key in out:
                raise ModelFileError(f"the model file is invalid: {what} has the dict key "
                                     f"{_preview(key)} twice.")
            out[key] = self.decode(item[1], what, depth + 1)
        return out


def _fitted_attributes(model):
    return {name: value for name, value in vars(model).items()
            if name.endswith("_") and not name.startswith("_")}


def _output_config_problem(config):
    """What is wrong with a ``set_output`` configuration, or ``None``.

    Parameters
    ----------
    config : object
        The estimator's ``_sklearn_output_config`` (at save time) or the
        header's ``set_output`` value (at load time).

    Returns
    -------
    str or None
        A phrase naming the first problem, or ``None`` when ``config`` is a
        dict whose keys are among ``_OUTPUT_METHODS`` and whose values are
        among ``_OUTPUT_CONTAINERS``.

    Examples
    --------
    >>> _output_config_problem({"transform": "pandas"}) is None
    True
    >>> _output_config_problem({"transform": None})
    "its 'transform' is None, not one of 'default', 'pandas', 'polars'"
    >>> _output_config_problem({"predict": "pandas"})
    "it configures 'predict'; set_output configures only 'transform'"
    """
    if not isinstance(config, dict):
        return f"it is {_preview(config)}, not a dict"
    for method, container in config.items():
        if method not in _OUTPUT_METHODS:
            return (f"it configures {_preview(method)}; set_output configures only "
                    f"{', '.join(map(repr, _OUTPUT_METHODS))}")
        if not isinstance(container, str) or container not in _OUTPUT_CONTAINERS:
            return (f"its {method!r} is {_preview(container)}, not one of "
                    f"{', '.join(map(repr, _OUTPUT_CONTAINERS))}")
    return None


def save(model, path):
    """Save a fastmetric estimator to a file that loading never executes.

    Parameters
    ----------
    model : estimator
        One of fastmetric's public estimators, fitted or not.
    path : str, os.PathLike or file object
        Where to write.  The name is used as given (no suffix is added); a
        file on disk is written to a temporary name first and then renamed,
        so an interrupted save never leaves a truncated model file.

    Raises
    ------
    TypeError
        ``model`` is not one of fastmetric's public estimators, or a
        parameter or a fitted attribute cannot be stored as data (the
        message names it): a callable ``callback`` or ``preprocessor``, an
        estimator as ``init``, or an attribute of another type.
    ValueError
        A value nested more than 32 levels deep, or a ``set_output``
        configuration other than ``transform`` set to ``"default"``,
        ``"pandas"`` or ``"polars"`` (``set_output`` stores any value;
        scikit-learn's ``transform`` refuses the others).

    See Also
    --------
    load : read the file back.

    Notes
    -----
    The format (a versioned ``.npz`` zip of arrays plus a JSON header) is
    described in the module :mod:`fastmetric._persistence`.  It holds the
    parameters, the fitted attributes and the ``set_output`` configuration
    (so that a model set to ``transform="pandas"`` still returns
    DataFrames), not a stochastic solver's state
    (Adam's moments, the draws' seed): ``partial_fit`` on a loaded model
    starts a new fit from its batch, with a warning.  To stop and resume
    streaming, keep the object (``pickle`` keeps that state).
    """
    cls = type(model)
    if _CLASSES.get(cls.__name__) is not cls:
        raise TypeError(
            f"save() stores fastmetric's public estimators ({', '.join(sorted(_CLASSES))}); "
            f"got {cls.__module__}.{cls.__qualname__}."
        )
    encoder = _Encoder()
    params = {}
    for name, value in model.get_params(deep=False).items():
        if callable(value) and not isinstance(value, np.ndarray):
            raise TypeError(
                f"cannot save parameter {name}={value!r}: it is callable, and the model "
                f"file holds data, never code. Set it to None (model.set_params({name}=None))"
                " or to an array before saving."
            )
        params[name] = encoder.encode(value, f"parameter {name!r}")
    attributes = {name: encoder.encode(value, f"fitted attribute {name!r}")
                  for name, value in _fitted_attributes(model).items()}
    # scikit-learn has no public getter for set_output's configuration: its
    # own clone reads this instance attribute too.  Only the instance's (a
    # model never configured has none, and its file stays as before).
    output_config = vars(model).get("_sklearn_output_config")
    if output_config is not None:
        problem = _output_config_problem(output_config)
        if problem is not None:
            raise ValueError(
                f"cannot save the set_output configuration {_preview(output_config)}: "
                f"{problem} (scikit-learn's transform accepts only those).  Set a valid one "
                "with model.set_output(transform='default') (or 'pandas', 'polars') before "
                "saving.")
    # The package's own version: read from the loaded package (importing it
    # here would make an import circle with fastmetric/__init__.py).
    __version__ = sys.modules["fastmetric"].__version__
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fastmetric_version": __version__,
        "class": cls.__name__,
        "params": params,
        "attributes": attributes,
    }
    if output_config:
        header[_SET_OUTPUT] = dict(output_config)
    members = {_HEADER: np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
    members.update(encoder.arrays)
    if hasattr(path, "write"):
        np.savez(path, **members)
        return
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **members)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_member(archive, key, what):
    """Member ``key`` of the archive, read without pickle; a ModelFileError
    when it needs pickle (an object array) or the archive is damaged."""
    try:
        return archive[key]
    except MemoryError:
        # A .npy header can declare any shape: a few bytes may ask for terabytes.
        raise ModelFileError(f"the model file is damaged: member {key!r} ({what}) cannot be "
                             "read: it declares an array larger than the memory "
                             "available.") from None
    except _CORRUPT as exc:
        if isinstance(exc, ValueError) and "pickle" in str(exc):
            if key == _HEADER:
                raise ModelFileError("not a fastmetric model file: its header needs pickle.") \
                    from None
            raise ModelFileError(f"the model file is refused: member {key!r} ({what}) is not a "
                                 f"plain numeric or string array ({exc}).") from None
        raise ModelFileError(f"the model file is damaged: member {key!r} ({what}) cannot be "
                             f"read ({type(exc).__name__}: {exc}).") from None


def _read_header(archive):
    if _HEADER not in archive.files:
        raise ModelFileError("not a fastmetric model file: the archive has no 'header' member.")
    raw = _read_member(archive, _HEADER, "the header")
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError("not a fastmetric model file: its header is not UTF-8 JSON bytes.")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors, and so is
        # an integer literal longer than Python converts (sys.int_info).
        raise ModelFileError(f"not a fastmetric model file: its header is not JSON ({exc}).") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        got = header.get("format") if isinstance(header, dict) else header
        raise ModelFileError(f"not a fastmetric model file: format {got!r}, expected "
                         f"{FORMAT_NAME!r}.")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"the model file has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"the model file has format version {version}, newer than this fastmetric "
            f"reads ({FORMAT_VERSION}; it was written by fastmetric "
            f"{header.get('fastmetric_version')!r}); upgrade fastmetric to load it."
        )
    return header


def load(path):
    """Load an estimator saved by :func:`save`, without running code from the file.

    Parameters
    ----------
    path : str, os.PathLike or file object

    Returns
    -------
    estimator
        A new estimator of the saved class, with the saved parameters,
        fitted attributes and ``set_output`` configuration: ``transform``,
        ``pair_distance``, ``predict`` and ``decision_function`` give
        bitwise the same results, in the same container, as the saved
        model's.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The path cannot be opened.
    ModelFileError
        (a ValueError) The file is not a fastmetric model file, has a newer format version,
        names a class outside fastmetric's public estimators, or is
        incomplete or tampered with (the message says which).

    See Also
    --------
    save
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # the path, not the file's content: Python's own error says which
    except ValueError as exc:  # e.g. a pickle, which allow_pickle=False refuses
        raise ModelFileError(f"not a fastmetric model file: {exc}") from None
    except _CORRUPT as exc:
        raise ModelFileError(f"not a fastmetric model file: {type(exc).__name__}: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError("not a fastmetric model file: it is a single array, not a zip "
                         "archive of a model.")
    with archive:
        header = _read_header(archive)
        name = header.get("class")
        cls = _CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ModelFileError(
                f"the model file names class {name!r}, which is not one of fastmetric's "
                f"estimators ({', '.join(sorted(_CLASSES))}); refused."
            )
        params, attributes = header.get("params"), header.get("attributes")
        if not isinstance(params, dict) or not isinstance(attributes, dict):
            raise ModelFileError("the model file is invalid: 'params' and 'attributes' must be "
                             "JSON objects.")
        known = set(cls._get_param_names())
        unknown = sorted(set(params) - known)
        if unknown:
            raise ModelFileError(f"the model file gives {name} parameter(s) {unknown} that it "
                             "does not have.")
        for attr in attributes:
            if not (isinstance(attr, str) and _ATTRIBUTE_NAME.match(attr)) or attr in known \
                    or callable(getattr(cls, attr, None)) \
                    or isinstance(getattr(cls, attr, None), property):
                raise ModelFileError(f"the model file is invalid: {_preview(attr)} is not a "
                                     f"fitted attribute name of {name}.")
        values, fitted = _decode_values(archive, params, attributes)
        # Absent from files of models never configured (and from every file
        # written before fastmetric kept it): the default configuration.
        output_config = header.get(_SET_OUTPUT, {})
        problem = _output_config_problem(output_config)
        if problem is not None:
            raise ModelFileError(f"the model file is invalid: its {_SET_OUTPUT!r} configuration "
                                 f"{_preview(output_config)} is refused: {problem}.")
    _check_fitted_state(cls, fitted)
    model = cls(**values)
    for attr, value in fitted.items():
        setattr(model, attr, value)
    if output_config:
        # scikit-learn offers set_output only to transformers.  Every allow-listed
        # class is one today; should one that is not join the list, a forged
        # key must still be a ModelFileError rather than an AttributeError.
        if not hasattr(model, "set_output"):
            raise ModelFileError(f"the model file is invalid: it gives {name} a "
                                 f"{_SET_OUTPUT!r} configuration, which {name} does not have.")
        # The public method, as the user called it, with the checked strings only.
        model.set_output(**output_config)
    return model


def _decode_values(archive, params, attributes):
    """Decode the header's parameters and fitted attributes.

    Parameters
    ----------
    archive : numpy.lib.npyio.NpzFile
        The open model file.
    params, attributes : dict
        The header's ``params`` and ``attributes`` objects (names already
        checked).

    Returns
    -------
    values, fitted : dict
        The decoded parameters and fitted attributes.

    Raises
    ------
    ModelFileError
        A value does not decode, or the archive holds a member that no
        value names.
    """
    decoder = _Decoder(archive)
    try:
        values = {k: decoder.decode(v, f"parameter {k!r}") for k, v in params.items()}
        fitted = {k: decoder.decode(v, f"fitted attribute {k!r}")
                  for k, v in attributes.items()}
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # The decoder checks what it reads; this is the net for a case it
        # missed, so that a tampered file still gives the documented error.
        raise ModelFileError(f"the model file is invalid: its values do not decode "
                             f"({type(exc).__name__}: {exc}).") from exc
    extra = sorted(set(archive.files) - decoder.used - {_HEADER})
    if extra:
        raise ModelFileError(f"the model file is refused: unexpected member(s) {extra}.")
    return values, fitted


def _required_attributes(cls):
    """The fitted attributes that the predictions of ``cls`` read.

    Parameters
    ----------
    cls : type
        One of the allow-listed estimator classes.

    Returns
    -------
    tuple of str
        ``components_`` and ``n_features_in_`` for every learner (they are
        all Mahalanobis learners), ``threshold_`` for the pair classifiers
        (``predict``), ``bias_`` for LDML (its pair probability) and
        ``cluster_centers_`` for ClusterLDML (``predict``).

    Examples
    --------
    >>> _required_attributes(NCA)
    ('components_', 'n_features_in_')
    >>> _required_attributes(LDML)
    ('components_', 'n_features_in_', 'threshold_', 'bias_')
    """
    names = ["components_", "n_features_in_"]
    if issubclass(cls, PairsClassifierMixin):
        names.append("threshold_")
    if issubclass(cls, (LDML, LDML_Supervised)):
        names.append("bias_")
    if issubclass(cls, ClusterLDML):
        names.append("cluster_centers_")
    return tuple(names)


def _is_finite_real(value):
    """Whether ``value`` is a finite real number (not a bool).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool

    Examples
    --------
    >>> _is_finite_real(1.5), _is_finite_real(np.float32(2)), _is_finite_real(True)
    (True, True, False)
    >>> _is_finite_real(float("nan")), _is_finite_real(10**400), _is_finite_real("1")
    (False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def _is_float_matrix(value):
    """Whether ``value`` is a non-empty 2-D float ndarray."""
    return (isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim == 2
            and value.size > 0)


def _describe(value):
    """``value``'s dtype and shape (or type), for a message."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return _preview(value)


def _check_fitted_state(cls, fitted):
    """Check that the fitted attributes the predictions read are present and sound.

    A file without fitted attributes is an unfitted model and passes.  A
    fitted one must hold every attribute of :func:`_required_attributes`,
    with ``components_`` a finite non-empty 2-D float array of
    ``n_features_in_`` columns, ``threshold_`` and ``bias_`` finite numbers,
    a pair classifier's ``classes_`` (when present) ``[-1, 1]`` or ``[0, 1]``,
    ``cluster_centers_`` a finite 2-D float array of ``components_.shape[0]``
    columns, and ``feature_names_in_`` (when present) ``n_features_in_``
    strings.  A tampered file must not give a model whose predictions
    raise AttributeError, return NaN or reach a kernel with a wrong shape.

    Parameters
    ----------
    cls : type
        The estimator class the file names.
    fitted : dict
        The decoded fitted attributes.

    Raises
    ------
    ModelFileError
        The first problem found, named.
    """
    name = cls.__name__

    def bad(what):
        raise ModelFileError(f"the model file is invalid: {name}'s {what}.")

    if not fitted:
        return
    missing = [attr for attr in _required_attributes(cls) if attr not in fitted]
    if missing:
        raise ModelFileError(
            f"the model file is invalid: {name} is fitted but lacks {' and '.join(missing)}, "
            f"which a fitted {name} needs (the file is incomplete or was tampered with).")
    n_features = fitted["n_features_in_"]
    if isinstance(n_features, bool) or not isinstance(n_features, numbers.Integral) \
            or n_features < 1:
        bad(f"n_features_in_ is {_preview(n_features)}, not a positive integer")
    L = fitted["components_"]
    if not _is_float_matrix(L):
        bad(f"components_ is not a non-empty 2-D float array (got {_describe(L)})")
    if not np.isfinite(L).all():
        bad("components_ holds NaN or infinity")
    if L.shape[1] != n_features:
        bad(f"components_ has {L.shape[1]} columns but n_features_in_ is "
            f"{_preview(n_features)}")
    for attr in ("threshold_", "bias_"):
        if attr in fitted and not _is_finite_real(fitted[attr]):
            bad(f"{attr} is {_preview(fitted[attr])}, not a finite number")
    if "classes_" in fitted and issubclass(cls, PairsClassifierMixin):
        # predict answers classes_[0] or classes_[1]: only the two encodings
        # fit can give (pair_label_classes); [7] would raise an IndexError,
        # ['a', 'b'] would be answered.
        classes = fitted["classes_"]
        if not (isinstance(classes, np.ndarray) and classes.dtype.kind in "iu"
                and classes.tolist() in ([-1, 1], [0, 1])):
            shown = (_preview(classes.tolist()) if isinstance(classes, np.ndarray)
                     and classes.size <= 8 else _describe(classes))
            bad(f"classes_ is {shown}, not the array [-1, 1] or [0, 1]")
    if "cluster_centers_" in fitted:
        centers = fitted["cluster_centers_"]
        if not _is_float_matrix(centers) or centers.shape[1] != L.shape[0]:
            bad(f"cluster_centers_ is not a non-empty 2-D float array of {L.shape[0]} columns "
                f"(components_ has {L.shape[0]} rows; got {_describe(centers)})")
        if not np.isfinite(centers).all():
            bad("cluster_centers_ holds NaN or infinity")
    if "feature_names_in_" in fitted:
        names = fitted["feature_names_in_"]
        if not (isinstance(names, np.ndarray) and names.ndim == 1
                and all(isinstance(v, str) for v in names.flat)):
            bad(f"feature_names_in_ is not a 1-D array of strings (got {_describe(names)})")
        if len(names) != n_features:
            bad(f"feature_names_in_ has {len(names)} names but n_features_in_ is "
                f"{_preview(n_features)}")
