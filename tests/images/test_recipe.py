"""EnvironmentRecipe: what its hash covers (and what it does not), the tag it names, the recipes it refuses."""

from __future__ import annotations

import pytest

from openscore.images import EnvironmentRecipe, RecipeError
from openscore.images.builder import dockerfile

BASE = "localhost/openscore:cpu"


def recipe(**kw) -> EnvironmentRecipe:
    fields = {"base_image": BASE, "docker_steps": ("RUN echo hi",), "pip_packages": ("scikit-learn==1.5.0", "joblib"),
              "flavour": "cpu"}
    return EnvironmentRecipe(**{**fields, **kw})


def test_the_same_environment_written_differently_has_one_hash():
    a = recipe(pip_packages=("scikit-learn==1.5.0", "joblib"))
    b = recipe(pip_packages=(" joblib", "Scikit_Learn == 1.5.0", "joblib"))  # order, case, spaces, a duplicate
    assert a.hash == b.hash and a.tag == b.tag


@pytest.mark.parametrize("change", [
    {"pip_packages": ("scikit-learn==1.5.1", "joblib")},  # a pin
    {"pip_packages": ("scikit-learn==1.5.0",)},  # a package fewer
    {"docker_steps": ("RUN echo hello",)},
    {"docker_steps": ()},
    {"base_image": "localhost/openscore:cpu-2"},
    {"flavour": "opencl"},
])
def test_any_change_to_what_is_built_names_a_new_image(change):
    assert recipe(**change).hash != recipe().hash


def test_the_hash_of_a_recipe_never_changes_between_versions():
    # every image in every registry is named by this: a change to the canonical form must bump HASH_VERSION
    r = EnvironmentRecipe(BASE, ("RUN echo hi",), ("joblib", "scikit-learn==1.5.0"), "cpu")
    assert r.canonical() == ('{"base_image":"localhost/openscore:cpu","docker_steps":["RUN echo hi"],'
                             '"flavour":"cpu","pip_packages":["joblib","scikit-learn==1.5.0"],"version":1}')
    assert r.hash == "3e04f684ae2c7b42df83924daa1c57e5f5b13bae3b4de9f372f2a627a714e5c5"


def test_tag_and_reference():
    r = recipe()
    assert r.tag == r.hash[:20]
    assert r.reference("127.0.0.1:5000") == f"127.0.0.1:5000/openscore-env:{r.tag}"
    assert r.reference("http://127.0.0.1:5000/") == f"127.0.0.1:5000/openscore-env:{r.tag}"
    assert r.reference(None) == f"localhost/openscore-env:{r.tag}"  # local storage: never pushed


@pytest.mark.parametrize("kw, named", [
    ({"base_image": ""}, "base_image"),
    ({"base_image": "python 3"}, "base_image"),
    ({"flavour": "rocm"}, "flavour 'rocm'"),
    ({"docker_steps": ("FROM debian",)}, "FROM debian"),
    ({"docker_steps": ("COPY . /app",)}, "COPY . /app"),
    ({"docker_steps": ("",)}, "docker step ''"),
    ({"pip_packages": ("--index-url=http://x",)}, "--index-url"),
    ({"pip_packages": ("",)}, "pip package ''"),
    ({"pip_packages": ("scikit-learn=1.5",)}, "scikit-learn=1.5"),
    ({"pip_packages": ("onnxruntime-gpu",)}, "onnxruntime-gpu"),
    ({"pip_packages": ("onnxruntime==1.20",), "flavour": "cuda"}, "onnxruntime==1.20"),
])
def test_recipes_that_cannot_be_built_are_refused_naming_the_field(kw, named):
    with pytest.raises(RecipeError, match=None) as e:
        recipe(**kw)
    assert named in str(e.value)


def test_a_bad_registry_name_is_refused():
    with pytest.raises(RecipeError, match="registry"):
        recipe().reference("http://host/path")


def test_the_dockerfile_runs_the_steps_as_root_installs_offline_and_ends_as_the_image_user():
    text = dockerfile(recipe(), with_wheels=True)
    lines = text.splitlines()
    assert lines[0] == f"FROM {BASE}" and lines[1] == "USER 0:0" and lines[2] == "RUN echo hi"
    assert "--no-index --find-links /tmp/wheels 'joblib' 'scikit-learn==1.5.0'" in lines[3]
    assert "--mount=type=bind,source=wheels" in lines[3]  # the wheels never become part of the image
    assert lines[-1] == "USER 10001:10001"
    assert not any(line.startswith(("COPY", "ADD")) for line in lines)
    assert "pip install" not in dockerfile(recipe(pip_packages=()), with_wheels=False)
