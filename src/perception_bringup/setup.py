from glob import glob

from setuptools import find_packages, setup

package_name = "perception_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Perception Team",
    maintainer_email="perception@example.com",
    description="Launch files, graph YAMLs, perception-run, instruction-pub and the demo of the perception workspace.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "instruction-pub = perception_bringup.instruction_pub:main",
            "perception-demo = perception_bringup.demo:main",
            "perception-models = perception_bringup.models_cli:main",
        ],
    },
)
