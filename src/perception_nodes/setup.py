from setuptools import find_packages, setup

package_name = "perception_nodes"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/config", ["config/fastdds.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Perception Team",
    maintainer_email="perception@example.com",
    description="Node runtime and sensor nodes (camera_node, microphone_node) of the perception workspace.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "camera_node = perception_nodes.entry:camera_node",
            "microphone_node = perception_nodes.entry:microphone_node",
            "perception-run = perception_nodes.launcher:main",
        ],
    },
)
