"""The extension's packaging: CMake lists every module file, the wizard's fields, catalog entry, icons.

With ``cmake`` installed, the extension is also configured, built and installed against a stand-in
for Slicer's CMake package (``fakeSlicer/``) and the installed tree is checked: module files,
icon, and the backend sources the installer needs (without tests).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from conftest import MODULE_DIR, REPO_ROOT
from SlicerTSKDLib.install.environment import BACKEND_FOLDER_NAME, findBackendSource, shippedBackendVersion

MODULE_NAME = "SlicerTSKD"
EXTENSION_NAME = "TSKD"  # the catalog forbids extension names starting with "Slicer"; the repository keeps it
CATALOG_ENTRY = REPO_ROOT / "Utilities" / "ExtensionsIndex" / (EXTENSION_NAME + ".json")
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"


def cmakeCode(path: Path) -> str:
    """CMake source without comments (a ``#`` outside quotes starts one)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        inQuotes, kept = False, []
        for char in line:
            if char == '"':
                inQuotes = not inQuotes
            if char == "#" and not inQuotes:
                break
            kept.append(char)
        lines.append("".join(kept))
    return "\n".join(lines)


def cmakeSet(code: str, name: str) -> list:
    """Items of ``set(name item...)``, with ``${MODULE_NAME}`` expanded."""
    match = re.search(r"\bset\(\s*" + re.escape(name) + r"\b(.*?)\)", code, re.DOTALL)
    assert match, "set({} ...) not found".format(name)
    return [item.replace("${MODULE_NAME}", MODULE_NAME) for item in match.group(1).split()]


def cmakeValue(code: str, name: str) -> str:
    match = re.search(r'\bset\(\s*' + re.escape(name) + r'\s+"([^"]*)"\s*\)', code)
    assert match, "set({} \"...\") not found".format(name)
    return match.group(1)


def moduleFiles(pattern: str) -> set:
    return {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob(pattern) if "__pycache__" not in p.parts}


def test_every_python_file_of_the_module_is_listed():
    code = cmakeCode(MODULE_DIR / "CMakeLists.txt")
    listed = cmakeSet(code, "MODULE_PYTHON_SCRIPTS")
    assert len(listed) == len(set(listed)), "a script is listed twice"
    onDisk = moduleFiles("*.py")
    assert sorted(onDisk - set(listed)) == [], "add these files to MODULE_PYTHON_SCRIPTS in SlicerTSKD/CMakeLists.txt"
    assert sorted(set(listed) - onDisk) == [], "these listed scripts do not exist"
    assert "SlicerTSKD.py" in listed and "SlicerTSKDLib/__init__.py" in listed


def test_every_resource_is_listed():
    code = cmakeCode(MODULE_DIR / "CMakeLists.txt")
    listed = set(cmakeSet(code, "MODULE_PYTHON_RESOURCES"))
    onDisk = {p for p in moduleFiles("*") if p.startswith("Resources/") and (MODULE_DIR / p).is_file()}
    assert onDisk == listed
    assert "Resources/Icons/SlicerTSKD.png" in listed


def test_module_cmakelists_builds_the_module_installs_the_backend_and_registers_its_test():
    code = cmakeCode(MODULE_DIR / "CMakeLists.txt")
    assert re.search(r"set\(MODULE_NAME\s+SlicerTSKD\)", code)
    build = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", code, re.DOTALL).group(1).split()
    assert build[:2] == ["NAME", "${MODULE_NAME}"]
    assert "SCRIPTS" in build and "RESOURCES" in build and "WITH_GENERIC_TESTS" in build
    assert "${_backend_source_dir}/src/*" in code and "pyproject.toml" in code and "constraints*.txt" in code
    assert "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${_backend_folder}" in code
    assert "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${_backend_folder}" in code
    assert "tests" not in re.findall(r"GLOB_RECURSE.*?\)", code, re.DOTALL)[0]
    assert re.search(r"if\(BUILD_TESTING\)\s*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)\s*endif\(\)", code)
    assert "set(_backend_folder ${MODULE_NAME}Backend)" in code and BACKEND_FOLDER_NAME == MODULE_NAME + "Backend"


def test_top_level_cmakelists_has_the_extension_wizard_fields():
    code = cmakeCode(REPO_ROOT / "CMakeLists.txt")
    assert re.search(r"cmake_minimum_required\(VERSION 3\.\d+(\.\d+)?(\.\.\.[\d.]+)? FATAL_ERROR\)", code)
    assert re.search(r"project\(" + EXTENSION_NAME + r"\)", code)
    assert cmakeValue(code, "EXTENSION_HOMEPAGE") == "https://github.com/SlicerTSKD/SlicerTSKD"
    assert cmakeValue(code, "EXTENSION_CONTRIBUTORS") == "SlicerTSKD developers"
    assert len(cmakeValue(code, "EXTENSION_DESCRIPTION")) > 40
    icon = cmakeValue(code, "EXTENSION_ICONURL")
    assert icon == "https://raw.githubusercontent.com/SlicerTSKD/SlicerTSKD/main/Resources/Icons/SlicerTSKD.png"
    assert (REPO_ROOT / icon.split("/main/", 1)[1]).is_file()
    screenshots = cmakeValue(code, "EXTENSION_SCREENSHOTURLS").split()
    assert all(url.startswith("https://") and url.endswith(".png") for url in screenshots)
    # the catalog's checker downloads each one: a URL into this repository must name a file that exists
    ours = [url for url in screenshots if url.startswith("https://raw.githubusercontent.com/SlicerTSKD/SlicerTSKD/main/")]
    assert [url for url in ours if not (REPO_ROOT / url.split("/main/", 1)[1]).is_file()] == []
    assert cmakeValue(code, "EXTENSION_DEPENDS") == "NA"
    order = ["find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(SlicerTSKD)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [code.find(line) for line in order]
    assert -1 not in positions and positions == sorted(positions)


def test_catalog_entry_follows_the_schema():
    """Checks the rules of Slicer's catalog-entry schema v1.0.1 (required keys, no others, types)."""
    raw = CATALOG_ENTRY.read_bytes()
    assert b"\r" not in raw, "the extensions index requires LF line endings"
    entry = json.loads(raw)
    allowed = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
               "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= set(allowed), "keys the schema does not allow: {}".format(set(entry) - set(allowed))
    for key, value in entry.items():
        assert isinstance(value, allowed[key]), key
    assert entry["$schema"].split("#")[0] == SCHEMA_URL
    assert all(isinstance(item, str) for item in entry["build_dependencies"])
    assert 1 <= entry["tier"] <= 5
    assert entry.get("scm_type", "git") in ("git", "local")
    assert entry["category"] == "Segmentation"
    assert entry["scm_url"] == "https://github.com/SlicerTSKD/SlicerTSKD"
    assert entry["build_subdirectory"] == "."
    # the index's own checks: file name = CMake project name, no "Slicer" prefix; repository name starts with it
    assert not EXTENSION_NAME.lower().startswith("slicer")
    assert entry["scm_url"].rstrip("/").split("/")[-1].startswith("Slicer")


def test_icons_are_128_pixel_pngs_and_identical():
    extension = REPO_ROOT / "Resources" / "Icons" / "SlicerTSKD.png"
    module = MODULE_DIR / "Resources" / "Icons" / "SlicerTSKD.png"
    for path in (extension, module):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (128, 128)
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 50  # a drawing, not a flat placeholder
    assert extension.read_bytes() == module.read_bytes()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_configure_build_and_install_against_a_stand_in_for_slicer(tmp_path):
    build, prefix = tmp_path / "build", tmp_path / "install"
    fake = Path(__file__).resolve().parent / "fakeSlicer"

    def cmake(*args):
        result = subprocess.run(["cmake", *args], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    output = cmake("-S", str(REPO_ROOT), "-B", str(build), "-DSlicer_DIR=" + str(fake))
    assert "CMake Warning" not in output, output
    cmake("--build", str(build))
    cmake("--install", str(build), "--prefix", str(prefix))
    assert (build / "python-unittests.txt").read_text(encoding="utf-8").split() == ["SlicerTSKD.py"]

    for tree in (build, prefix):
        modules = tree / "lib" / "Slicer-5.8" / "qt-scripted-modules"
        listed = cmakeSet(cmakeCode(MODULE_DIR / "CMakeLists.txt"), "MODULE_PYTHON_SCRIPTS")
        assert all((modules / name).is_file() for name in listed)
        assert (modules / "Resources" / "Icons" / "SlicerTSKD.png").is_file()
        backend = modules / BACKEND_FOLDER_NAME
        assert findBackendSource(str(modules)) == str(backend)
        assert shippedBackendVersion(str(backend)) == shippedBackendVersion(str(REPO_ROOT / "TSKDBackend"))
        for name in ("pyproject.toml", "README.md", "constraints.txt", "src/tskd/__init__.py", "src/tskd/cli/main.py"):
            assert (backend / name).is_file(), name
        shipped = {p.relative_to(backend / "src").as_posix() for p in (backend / "src").rglob("*.py")}
        source = {p.relative_to(REPO_ROOT / "TSKDBackend" / "src").as_posix()
                  for p in (REPO_ROOT / "TSKDBackend" / "src").rglob("*.py")}
        assert shipped == source
        assert not (backend / "tests").exists()
        assert not list(backend.rglob("__pycache__"))


def test_module_file_is_thin():
    lines = (MODULE_DIR / "SlicerTSKD.py").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 110


#: ``extension_description_checks`` of Slicer/ExtensionsIndex ``scripts/check_description_files.py`` (commit
#: 07f1d1b), then ``check_dependencies``: a new check there must be added here and to the docs' list.
INDEX_CHECKS = ["check_clone_repository", "check_repository_size", "check_json_schema", "check_json_file_format",
                "check_extension_name", "check_category", "check_git_repository_name",
                "check_git_repository_topics", "check_scm_url_syntax", "check_cmakelists_content",
                "check_license_file", "check_dependencies"]


def test_the_submission_list_names_every_check_of_the_index_checker():
    """Issue 32, item 13: docs/slicer-extension.md's submission list names each check (the topic
    ``3d-slicer-extension`` included), and what can be checked offline holds."""
    docs = (REPO_ROOT / "docs" / "slicer-extension.md").read_text(encoding="utf-8")
    section = docs.split("## Before the first catalog submission", 1)[1].split("\n## ", 1)[0]
    assert [check for check in INDEX_CHECKS if "`{}`".format(check) not in section] == []
    assert "3d-slicer-extension" in section
    entry = json.loads(CATALOG_ENTRY.read_bytes())
    code = cmakeCode(REPO_ROOT / "CMakeLists.txt")
    assert re.search(r"project\(\s*" + EXTENSION_NAME + r"\s*\)", code)  # check_cmakelists_content
    assert cmakeValue(code, "EXTENSION_ICONURL").endswith(".png")
    assert entry["scm_url"].split("://")[0] in ("git", "https") and "://" in entry["scm_url"]  # check_scm_url_syntax
    assert entry["category"] in ("Segmentation",)  # one of ACCEPTED_EXTENSION_CATEGORIES
    assert entry["build_dependencies"] == []  # check_dependencies
    assert any((REPO_ROOT / name).is_file() for name in ("LICENSE", "LICENCE", "License.txt", "LICENSE.txt", "COPYING"))
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    size = sum((REPO_ROOT / name).stat().st_size for name in tracked.decode().split("\0")
               if name and (REPO_ROOT / name).is_file())
    assert size < 100 * 1024 * 1024, "check_repository_size: {:.1f} MB".format(size / 1048576.0)
