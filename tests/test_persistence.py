"""Safe model files: ``fastmetric.save`` / ``fastmetric.load``.

Every public estimator survives a round trip bitwise (``transform``,
``pair_distance``, and ``predict`` / ``decision_function`` where they
exist); files that are newer, name an unknown class, were tampered with,
miss a member or carry a pickle are refused, the pickle without running it.
The skops route (``skops.io``) is checked too when skops is installed.
"""
import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

import fastmetric
from fastmetric._persistence import FORMAT_NAME, FORMAT_VERSION, ModelFileError

from ._learner_cases import all_cases, iris_std, public_estimator_classes

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CASES = all_cases()
METHODS = ("transform", "pair_distance", "predict", "decision_function")


def _outputs(est, case):
    """The results of every prediction method the case has."""
    out = {"transform": est.transform(case.X), "pair_distance": est.pair_distance(case.pairs)}
    if case.tuples is not None:
        out["predict"] = est.predict(case.tuples)
        out["decision_function"] = est.decision_function(case.tuples)
    return out


def assert_bitwise_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_cases_cover_every_public_estimator():
    assert {case.cls for case in CASES} == set(public_estimator_classes())


@pytest.fixture(scope="module")
def fitted():
    """Each case's estimator, fitted once for the module."""
    return {case.name: case.fit() for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_round_trip_is_bitwise(case, fitted, tmp_path):
    est = fitted[case.name]
    path = tmp_path / "model.fmz"
    fastmetric.save(est, path)
    assert os.listdir(tmp_path) == ["model.fmz"]  # no suffix added, no temporary left
    loaded = fastmetric.load(path)
    assert type(loaded) is type(est)
    before, after = _outputs(est, case), _outputs(loaded, case)
    assert set(after) == set(before)
    for method in before:
        assert_bitwise_equal(before[method], after[method])
    assert_bitwise_equal(loaded.components_, est.components_)
    # The parameters come back (arrays as equal arrays) and the model refits.
    for name, value in est.get_params(deep=False).items():
        np.testing.assert_array_equal(loaded.get_params(deep=False)[name], value)
    if case.name in ("LDML-points", "NCA", "RCA", "Covariance"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refit = loaded.fit(*case.fit_args)
        assert_bitwise_equal(refit.components_, case.fit().components_)


def test_unfitted_model_and_file_objects():
    est = fastmetric.LDML_Supervised(n_pairs=50, init="pca", alpha=0.5)
    buf = io.BytesIO()
    fastmetric.save(est, buf)
    buf.seek(0)
    loaded = fastmetric.load(buf)
    assert loaded.get_params() == est.get_params()
    assert not hasattr(loaded, "components_")


def test_values_keep_their_types(tmp_path):
    """numpy scalars, non-finite floats, tuples, dicts and string arrays
    come back with their types."""
    est = fastmetric.Covariance().fit(iris_std()[0])
    extra = {"a_": np.float32(1.5), "b_": float("nan"), "c_": (1, "x", None, [2.5, -np.inf]),
             "d_": {"k": np.arange(3), 4: True}, "e_": np.array(["u", "v"], dtype=object),
             "f_": np.int64(7), "g_": 10**30}
    for name, value in extra.items():
        setattr(est, name, value)
    fastmetric.save(est, tmp_path / "m")
    loaded = fastmetric.load(tmp_path / "m")
    assert type(loaded.a_) is np.float32 and loaded.a_ == np.float32(1.5)
    assert isinstance(loaded.b_, float) and np.isnan(loaded.b_)
    assert loaded.c_ == (1, "x", None, [2.5, -np.inf])
    assert list(loaded.d_) == ["k", 4] and loaded.d_[4] is True
    np.testing.assert_array_equal(loaded.d_["k"], np.arange(3))
    assert loaded.e_.dtype == object and list(loaded.e_) == ["u", "v"]
    assert type(loaded.f_) is np.int64 and loaded.g_ == 10**30


def test_feature_names_survive(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = iris_std()
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = fastmetric.NCA(max_iter=3, n_jobs=1).fit(df, y)
    fastmetric.save(est, tmp_path / "m")
    loaded = fastmetric.load(tmp_path / "m")
    assert list(loaded.feature_names_in_) == ["a", "b", "c", "d"]
    assert_bitwise_equal(loaded.transform(df), est.transform(df))


# --------------------------------------------------------------------------
# What save refuses
# --------------------------------------------------------------------------
def test_save_refuses_code_and_unknown_values(tmp_path):
    X, y = iris_std()
    with pytest.raises(TypeError, match="parameter callback=.*callable.*set_params"):
        fastmetric.save(fastmetric.NCA(callback=lambda *a: False), tmp_path / "m")
    with pytest.raises(TypeError, match="parameter preprocessor=.*callable"):
        fastmetric.save(fastmetric.LDML(preprocessor=lambda idx: X[idx]), tmp_path / "m")
    nca = fastmetric.NCA(max_iter=2, n_jobs=1).fit(X, y)
    with pytest.raises(TypeError, match="parameter 'init'.*NCA"):
        fastmetric.save(fastmetric.LMNN(init=nca), tmp_path / "m")
    nca.odd_ = object()
    with pytest.raises(TypeError, match="fitted attribute 'odd_'.*type object"):
        fastmetric.save(nca, tmp_path / "m")
    nca.odd_ = np.array([object()])
    with pytest.raises(TypeError, match="fitted attribute 'odd_'.*object array"):
        fastmetric.save(nca, tmp_path / "m")
    from sklearn.decomposition import PCA

    with pytest.raises(TypeError, match="public estimators.*PCA"):
        fastmetric.save(PCA(), tmp_path / "m")
    assert not os.path.exists(tmp_path / "m")  # nothing written on refusal


# --------------------------------------------------------------------------
# What load refuses
# --------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    X, y = iris_std()
    est = fastmetric.NCA(max_iter=3, n_jobs=1).fit(X, y)
    path = tmp_path / "model.fmz"
    fastmetric.save(est, path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def _header(members):
    return json.loads(np.load(io.BytesIO(members["header.npy"])).tobytes())


def _write(path, members, header=None):
    if header is not None:
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        members = {**members, "header.npy": buf.getvalue()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _edit_header(saved, edit):
    members = _members(saved)
    header = _header(members)
    edit(header)
    return _write(saved, members, header)


def test_the_header_is_documented_json(saved):
    header = _header(_members(saved))
    assert header["format"] == FORMAT_NAME and header["format_version"] == FORMAT_VERSION
    assert header["class"] == "NCA" and header["fastmetric_version"] == fastmetric.__version__
    assert header["params"]["max_iter"] == 3
    key = header["attributes"]["components_"]["__array__"]
    assert key.startswith("array_")
    np.testing.assert_array_equal(np.load(saved)[key], fastmetric.load(saved).components_)


def test_newer_format_version_is_refused(saved):
    _edit_header(saved, lambda h: h.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}, newer.*upgrade"):
        fastmetric.load(saved)


@pytest.mark.parametrize("name", ["PCA", "sklearn.decomposition.PCA", "os.system", "", None,
                                  "_MahalanobisMetric"])
def test_unknown_class_is_refused(saved, name):
    _edit_header(saved, lambda h: h.update({"class": name}))
    with pytest.raises(ModelFileError, match="names class .*not one of fastmetric's estimators"):
        fastmetric.load(saved)


@pytest.mark.parametrize("edit, message", [
    # another allowed class whose parameters differ
    (lambda h: h.update({"class": "Covariance"}), "Covariance parameter.*does not have"),
    (lambda h: h.update(format="pickle"), "format 'pickle'"),
    (lambda h: h.update(format_version="1"), "invalid format_version"),
    (lambda h: h["attributes"].update(__class__={"__array__": "array_0"}),
     "'__class__' is not a fitted attribute"),
    (lambda h: h["attributes"].update(transform_={"__array__": "array_0"}) or
     h["attributes"].update(fit={"__array__": "array_0"}), "'fit' is not a fitted attribute"),
    (lambda h: h["attributes"].update(components_={"__array__": "header"}), "names the member"),
    (lambda h: h["attributes"].update(components_={"__scalar__": "array_0"}), "scalar of shape"),
    (lambda h: h["attributes"].update(components_={"__code__": "x"}), "holds"),
    (lambda h: h.update(params=[]), "must be JSON objects"),
])
def test_tampered_files_are_refused(saved, edit, message):
    _edit_header(saved, edit)
    with pytest.raises(ModelFileError, match=message):
        fastmetric.load(saved)


def _nested(levels, leaf=1):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("value, message", [
    # dict keys that decode to something unhashable (a tuple holding a list
    # or an array raised a raw TypeError), or to a container
    ({"__dict__": [[{"__tuple__": [[1]]}, 1]]}, "dict key .* is unhashable"),
    ({"__dict__": [[{"__tuple__": [{"__array__": "array_0"}]}, 1]]}, "dict key .* is unhashable"),
    ({"__dict__": [[{"__tuple__": [{"__tuple__": [{"__dict__": []}]}]}, 1]]},
     "dict key .* is unhashable"),
    ({"__dict__": [[[1], 1]]}, "dict key .* is unhashable"),
    ({"__dict__": [[{"__dict__": []}, 1]]}, "dict key .* is unhashable"),
    ({"__dict__": [[{"__array__": "array_0"}, 1]]}, "dict key .* is unhashable"),
    ({"__dict__": [["a", 1], ["a", 2]]}, "dict key 'a' twice"),
    # markers whose content has the wrong type or shape
    ({"__dict__": [["a", 1, 2]]}, "not a \\[key, value\\] pair"),
    ({"__dict__": [5]}, "not a \\[key, value\\] pair"),
    ({"__dict__": {"a": 1}}, "holds"),
    ({"__tuple__": {"a": 1}}, "holds"),
    ({"__tuple__": "ab"}, "holds"),
    ({"__array__": 5}, "names the member 5"),
    ({"__array__": ["array_0"]}, "names the member"),
    ({"__array__": {"__array__": "array_0"}}, "names the member"),
    ({"__array__": "array_7"}, "incomplete: member 'array_7'"),
    ({"__array__": "array_1", "object_str": True}, "object_str.*not a string array"),
    ({"__array__": "array_1", "object_str": 1}, "holds"),
    ({"__array__": "array_1", "other": True}, "holds"),
    ({"__scalar__": ["array_0"]}, "names the member"),
    ({"__float__": ["nan"]}, "holds"),
    ({"__float__": "1.5"}, "holds"),
    ({"__tuple__": [1], "__dict__": []}, "holds"),
    ({}, "holds"),
    # nesting beyond the limit, as lists, tuples and dicts
    (_nested(40), "nested too deep"),
    ({"__tuple__": _nested(40)}, "nested too deep"),
    ({"__dict__": [["k", _nested(40)]]}, "nested too deep"),
])
def test_decoded_values_of_unexpected_types_are_refused(saved, value, message):
    """A header that is valid JSON but whose encoded values have unexpected
    types or shapes is a ModelFileError naming the attribute, never another
    exception."""
    _edit_header(saved, lambda h: h["attributes"].update(foo_=value))
    with pytest.raises(ModelFileError, match=message) as info:
        fastmetric.load(saved)
    assert "foo_" in str(info.value)


def test_an_oversized_value_in_a_message_is_shortened(saved):
    _edit_header(saved, lambda h: h["attributes"].update(foo_={"__code__": "x" * 100_000}))
    with pytest.raises(ModelFileError, match="foo_") as info:
        fastmetric.load(saved)
    assert len(str(info.value)) < 500


def test_a_header_integer_beyond_python_s_limit_is_refused(saved):
    """An integer literal of more digits than Python converts raised a plain
    ValueError from json."""
    members = _members(saved)
    text = json.dumps(_header(members)).replace('"n_iter_": 3', '"n_iter_": ' + "7" * 5000)
    assert "7" * 5000 in text
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(text.encode(), dtype=np.uint8))
    with pytest.raises(ModelFileError, match="header is not JSON"):
        fastmetric.load(_write(saved, {**members, "header.npy": buf.getvalue()}))


def test_a_member_declaring_a_huge_array_is_refused(saved):
    """A member whose .npy header declares terabytes, in a file of a few
    kilobytes, raised MemoryError."""
    members = _members(saved)
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    npy.write(b"\0" * 64)
    key = _components_member(members)
    with pytest.raises(ModelFileError, match=f"member '{key}'.*cannot be read"):
        fastmetric.load(_write(saved, {**members, f"{key}.npy": npy.getvalue()}))


def _saved_case(fitted, name, path):
    fastmetric.save(fitted[name], path)
    return path


def _drop(*names):
    return lambda h: [h["attributes"].pop(n) for n in names]


def _set(name, value):
    return lambda h: h["attributes"].update({name: value})


def _swap(a, b):
    """Exchange the encoded values of attributes ``a`` and ``b``."""
    def edit(h):
        attrs = h["attributes"]
        attrs[a], attrs[b] = attrs[b], attrs[a]
    return edit


def _prune(path):
    """Drop the archive members that the header no longer names, so that a
    test reaches the checks after the unexpected-member one."""
    members = _members(path)
    named = {f"{key}.npy" for key in re.findall(r'"__(?:array|scalar)__": "([^"]+)"',
                                                  json.dumps(_header(members)))}
    return _write(path, {k: v for k, v in members.items() if k == "header.npy" or k in named})


@pytest.mark.parametrize("name, edit, message", [
    ("NCA", _drop("n_features_in_"), "NCA is fitted but lacks n_features_in_"),
    ("NCA", _drop("components_"), "NCA is fitted but lacks components_"),
    ("NCA", _drop("components_", "n_features_in_"),
     r"lacks components_ and n_features_in_"),
    ("NCA", _set("n_features_in_", 3), "4 columns but n_features_in_ is 3"),
    ("NCA", _set("n_features_in_", True), "n_features_in_ is True"),
    ("NCA", _set("n_features_in_", 10**400), "4 columns but n_features_in_"),
    ("NCA", _swap("components_", "classes_"), "components_ is not a non-empty 2-D float"),
    ("NCA", _set("feature_names_in_", "abcd"), "feature_names_in_"),
    ("NCA", _set("feature_names_in_", [1, 2, 3, 4]), "feature_names_in_"),
    ("LDML-indices", _drop("threshold_"), "LDML is fitted but lacks threshold_"),
    ("LDML-indices", _drop("bias_"), "LDML is fitted but lacks bias_"),
    ("LDML-indices", _set("bias_", "x"), "bias_ is 'x', not a finite number"),
    ("LDML-indices", _set("bias_", {"__float__": "nan"}), "bias_ is nan, not a finite"),
    ("LDML_Supervised", _drop("bias_"), "lacks bias_"),
    ("ITML-points", _set("threshold_", 10**400), "threshold_ is 1000.*not a finite number"),
    ("MMC-points", _drop("threshold_"), "MMC is fitted but lacks threshold_"),
    # predict answers classes_[0] or classes_[1]: [7] raised an IndexError,
    # ['a', 'b'] was answered
    ("ITML-points", _set("classes_", [7]), r"ITML's classes_ is \[7\], not the array"),
    ("LDML-indices", _set("classes_", ["a", "b"]), r"classes_ is \['a', 'b'\], not the array"),
    ("MMC-points", _set("classes_", [0.5, 2.0]), r"classes_ is \[0.5, 2.0\], not the array"),
    ("ClusterLDML", _drop("cluster_centers_"), "ClusterLDML is fitted but lacks cluster_centers_"),
    ("ClusterLDML", _swap("cluster_centers_", "labels_"), "cluster_centers_ is not a non-empty"),
    ("ClusterLDML", _set("cluster_centers_", [[0.0, 1.0]]), "cluster_centers_ is not a non-empty"),
    ("LSML-points", _drop("n_features_in_"), "LSML is fitted but lacks n_features_in_"),
])
def test_fitted_files_must_hold_what_predictions_read(fitted, tmp_path, name, edit, message):
    """A tampered file lacking a fitted attribute that predictions read loaded
    into a model whose transform (or predict) raised AttributeError."""
    path = _prune(_edit_header(_saved_case(fitted, name, tmp_path / "m"), edit))
    with pytest.raises(ModelFileError, match=message):
        fastmetric.load(path)


def test_feature_names_must_match_the_features(tmp_path):
    X, y = iris_std()
    est = fastmetric.NCA(max_iter=3, n_jobs=1).fit(X, y)
    est.feature_names_in_ = np.array(["a", "b", "c", "d"], dtype=object)
    fastmetric.save(est, tmp_path / "m")
    assert list(fastmetric.load(tmp_path / "m").feature_names_in_) == ["a", "b", "c", "d"]
    est.feature_names_in_ = np.array(["a", "b", "c"], dtype=object)
    fastmetric.save(est, tmp_path / "m")
    with pytest.raises(ModelFileError, match="feature_names_in_ .*3 names.*n_features_in_ is 4"):
        fastmetric.load(tmp_path / "m")


def test_a_file_without_fitted_attributes_is_an_unfitted_model(saved):
    """Dropping every fitted attribute leaves a valid unfitted model: it
    loads, and predicting raises scikit-learn's NotFittedError."""
    from sklearn.exceptions import NotFittedError

    _prune(_edit_header(saved, lambda h: h["attributes"].clear()))
    assert list(_members(saved)) == ["header.npy"]
    loaded = fastmetric.load(saved)
    with pytest.raises(NotFittedError):
        loaded.transform(iris_std()[0])


def _components_member(members):
    return _header(members)["attributes"]["components_"]["__array__"]


def test_missing_and_unexpected_members_are_refused(saved):
    members = _members(saved)
    key = _components_member(members)
    missing = {k: v for k, v in members.items() if k != f"{key}.npy"}
    with pytest.raises(ModelFileError, match=f"incomplete: member '{key}'.*components_"):
        fastmetric.load(_write(saved, missing))
    with pytest.raises(ModelFileError, match="no 'header' member"):
        fastmetric.load(_write(saved, {k: v for k, v in members.items() if k != "header.npy"}))
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with pytest.raises(ModelFileError, match=r"unexpected member\(s\) \['extra'\]"):
        fastmetric.load(_write(saved, {**members, "extra.npy": buf.getvalue()}))
    (saved.parent / "junk").write_bytes(b"not a zip at all")
    with pytest.raises(ModelFileError, match="not a fastmetric model file"):
        fastmetric.load(saved.parent / "junk")


class _Payload:
    """Unpickling this object creates the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_is_refused_without_running_it(saved, tmp_path):
    marker = tmp_path / "payload-ran"
    # A sanity check of the payload itself: unpickling it does create the marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()

    members = _members(saved)
    evil = io.BytesIO()
    np.save(evil, np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    # (1) an object array in place of the components
    key = _components_member(members)
    with pytest.raises(ModelFileError, match=f"member '{key}'.*not a plain numeric"):
        fastmetric.load(_write(saved, {**members, f"{key}.npy": evil.getvalue()}))
    # (2) an object array as the header
    with pytest.raises(ModelFileError, match="header needs pickle"):
        fastmetric.load(_write(saved, {**members, "header.npy": evil.getvalue()}))
    # (3) a raw pickle beside the model, in the zip
    raw = pickle.dumps(_Payload(marker))
    with pytest.raises(ModelFileError, match="unexpected member"):
        fastmetric.load(_write(saved, {**members, "payload.pkl": raw, "payload.npy": raw}))
    # (4) the whole file a pickle (what joblib/pickle model files are)
    (tmp_path / "model.pkl").write_bytes(raw)
    with pytest.raises(ModelFileError, match="not a fastmetric model file.*pickle"):
        fastmetric.load(tmp_path / "model.pkl")
    assert not marker.exists()


# --------------------------------------------------------------------------
# The skops route
# --------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_skops_round_trip(case, fitted, tmp_path):
    sio = pytest.importorskip(
        "skops.io", reason="skops is not installed (pip install skops): the skops route of "
        "safe persistence is not checked")
    est = fitted[case.name]
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    untrusted = sio.get_untrusted_types(file=path)
    # The one type to trust is the estimator's own class, named by its
    # module path (a private module: a file names the class where it lives).
    assert untrusted == [f"{type(est).__module__}.{type(est).__name__}"]
    assert untrusted[0].startswith("fastmetric._learners.")
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    loaded = sio.load(path, trusted=untrusted)
    before, after = _outputs(est, case), _outputs(loaded, case)
    for method in before:
        assert_bitwise_equal(before[method], after[method])


@pytest.mark.parametrize("cls", ["NCA", "LDML_Supervised"])
def test_partial_fit_on_a_loaded_model_warns_that_it_starts_afresh(cls, tmp_path):
    """The solver state is not in the file, so partial_fit on a loaded model
    silently threw the loaded components_ away; it now warns (and a model
    kept in memory continues without a warning)."""
    import warnings

    from sklearn.datasets import load_wine

    import fastmetric as fm

    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    model = getattr(fm, cls)(solver="adam", random_state=0).partial_fit(X[:90], y[:90])
    fm.save(model, tmp_path / "m.npz")
    loaded = fm.load(tmp_path / "m.npz")
    with pytest.warns(UserWarning, match=f"{cls}.partial_fit starts a new fit"):
        loaded.partial_fit(X[90:], y[90:])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.partial_fit(X[90:], y[90:])


# --------------------------------------------------------------------------
# set_output's configuration
# --------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_set_output_survives_save_and_load(case, fitted, tmp_path):
    """A model set to transform="pandas" still returns DataFrames once loaded
    (it returned ndarrays: the configuration was dropped), with the same
    values, columns and index; the other methods are unchanged."""
    import copy

    pd = pytest.importorskip("pandas")
    est = copy.deepcopy(fitted[case.name]).set_output(transform="pandas")
    fastmetric.save(est, tmp_path / "m")
    assert _header(_members(tmp_path / "m"))["set_output"] == {"transform": "pandas"}
    loaded = fastmetric.load(tmp_path / "m")
    before, after = est.transform(case.X), loaded.transform(case.X)
    assert isinstance(before, pd.DataFrame) and isinstance(after, pd.DataFrame)
    pd.testing.assert_frame_equal(after, before, check_exact=True)
    assert_bitwise_equal(after.to_numpy(), before.to_numpy())
    assert loaded._sklearn_output_config == {"transform": "pandas"}
    for method in set(_outputs(est, case)) - {"transform"}:
        assert_bitwise_equal(_outputs(loaded, case)[method], _outputs(est, case)[method])


def test_set_output_default_and_polars_survive(tmp_path):
    """'default' overrides a global pandas output after loading too, and
    'polars' is kept whether or not polars is installed (transform needs it,
    not the file)."""
    import sklearn

    X, y = iris_std()
    est = fastmetric.NCA(max_iter=3, n_jobs=1).fit(X, y).set_output(transform="default")
    fastmetric.save(est, tmp_path / "m")
    loaded = fastmetric.load(tmp_path / "m")
    with sklearn.config_context(transform_output="pandas"):
        assert type(est.transform(X)) is np.ndarray
        assert type(loaded.transform(X)) is np.ndarray
    fastmetric.save(est.set_output(transform="polars"), tmp_path / "m")
    assert fastmetric.load(tmp_path / "m")._sklearn_output_config == {"transform": "polars"}


def test_files_without_set_output_load_with_the_default_configuration(saved):
    """A model never configured writes no 'set_output' key (its file is as
    before the key existed), and a file without the key, such as every file
    written before, loads with the default configuration."""
    assert "set_output" not in _header(_members(saved))
    loaded = fastmetric.load(saved)
    assert "_sklearn_output_config" not in vars(loaded)
    assert type(loaded.transform(iris_std()[0])) is np.ndarray
    # A pandas-configured model's file with the key removed: as written before.
    pytest.importorskip("pandas")
    X, y = iris_std()
    est = fastmetric.NCA(max_iter=3, n_jobs=1).set_output(transform="pandas").fit(X, y)
    fastmetric.save(est, saved)
    _edit_header(saved, lambda h: h.pop("set_output"))
    loaded = fastmetric.load(saved)
    assert type(loaded.transform(X)) is np.ndarray
    assert_bitwise_equal(loaded.transform(X), est.transform(X).to_numpy())


@pytest.mark.parametrize("value, message", [
    ({"transform": "bogus"}, "'transform' is 'bogus', not one of 'default', 'pandas', 'polars'"),
    ({"transform": None}, "'transform' is None, not one of"),
    ({"transform": "Pandas"}, "'transform' is 'Pandas'"),
    ({"transform": ["pandas"]}, r"'transform' is \['pandas'\]"),
    ({"transform": {"__array__": "array_0"}}, "'transform' is {'__array__'"),
    ({"transform": 1}, "'transform' is 1"),
    ({"fit_transform": "pandas"}, "configures 'fit_transform'; set_output configures only"),
    ({"__class__": "pandas"}, "configures '__class__'"),
    ("pandas", "it is 'pandas', not a dict"),
    ([["transform", "pandas"]], "not a dict"),
    (None, "it is None, not a dict"),
])
def test_set_output_values_in_a_file_are_validated(saved, value, message):
    """An invalid set_output configuration in a file is a ModelFileError
    naming it (it was silently ignored), never passed to scikit-learn."""
    _edit_header(saved, lambda h: h.update(set_output=value))
    with pytest.raises(ModelFileError, match="'set_output' configuration .* refused: .*" + message):
        fastmetric.load(saved)


@pytest.mark.parametrize("config", [{"transform": "bogus"}, {"transform": None},
                                    {"predict": "pandas"}, "pandas"])
def test_save_refuses_an_output_configuration_transform_does_not_accept(tmp_path, config):
    """A configuration scikit-learn's transform does not accept (set_output
    stores any value; the others can only be set by hand) is refused at
    save time, naming it, so save never writes a file that load refuses
    (it was written, and dropped)."""
    X, y = iris_std()
    est = fastmetric.NCA(max_iter=3, n_jobs=1).fit(X, y)
    if isinstance(config, dict) and isinstance(config.get("transform"), str):
        est.set_output(**config)
    else:
        est._sklearn_output_config = config
    with pytest.raises(ValueError, match="cannot save the set_output configuration .*"
                                         "set_output\\(transform='default'\\)"):
        fastmetric.save(est, tmp_path / "m")
    assert not os.path.exists(tmp_path / "m")
