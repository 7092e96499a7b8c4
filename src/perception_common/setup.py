from glob import glob

from setuptools import find_packages, setup

package_name = "perception_common"

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
    description="Sensor nodes, graph runner, shared helpers and evaluation tools of the perception workspace.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "camera_node = perception_common.nodes.camera_node:main",
            "microphone_node = perception_common.nodes.microphone_node:main",
            "perception-run = perception_common.launcher:main",
            "instruction-pub = perception_common.tools.instruction_pub:main",
            "perception-worlds = perception_eval.worlds.cli:main",
            "perception-demo = perception_common.demo:main",
            "bag-from-dataset = perception_eval.bags:main",
            "replay-eval = perception_eval.replay:main",
            "perception-bench = perception_eval.bench.harness:main",
            "perception-dds-check = perception_eval.bench.transport:main",
        ],
    },
)
