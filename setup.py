"""Maps the repository-root folders into the ``agmc_onnx`` namespace.

``cli/``, ``passes/`` and ``models/`` live at the repository root but install as
``agmc_onnx.cli``, ``agmc_onnx.passes`` and ``agmc_onnx.models`` so that nothing
generic such as ``models`` lands in site-packages.
"""

from setuptools import find_packages, setup

ROOTS = {
    "agmc_onnx": "agmc_onnx",
    "agmc_onnx.cli": "cli",
    "agmc_onnx.passes": "passes",
    "agmc_onnx.models": "models",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for namespace, folder in ROOTS.items():
        packages.append(namespace)
        package_dir[namespace] = folder
        for sub in find_packages(where=folder):
            packages.append(f"{namespace}.{sub}")
            package_dir[f"{namespace}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return packages, package_dir


packages, package_dir = _packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "agmc_onnx.models": ["zoo/*.onnx", "zoo/*.json", "zoo/*.npz", "zoo/*.toml", "zoo/*.tar.xz"]
    },
    include_package_data=True,
)
