from setuptools import find_packages, setup

package_name = "perception_common"

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
    description="ROS-free helpers of the perception workspace (images, video, audio, checkpoints, parameters).",
    license="Apache-2.0",
)
