from setuptools import find_packages, setup

package_name = "perception_eval"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Perception Team",
    maintainer_email="perception@example.com",
    description="Evaluation of the perception workspace: metrics, datasets, worlds, bags, replay, benchmarks.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "perception-worlds = perception_eval.worlds.cli:main",
            "bag-from-dataset = perception_eval.bags:main",
            "replay-eval = perception_eval.replay:main",
            "perception-bench = perception_eval.bench.harness:main",
            "perception-dds-check = perception_eval.bench.transport:main",
        ],
    },
)
