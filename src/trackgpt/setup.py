from setuptools import find_packages, setup

package_name = "trackgpt"

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
    description="TrackGPT instruction tracking in plain PyTorch (no rclpy).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "trackgpt-track = trackgpt.cli:main",
            "trackgpt-bench = trackgpt.bench:main",
            "trackgpt-compile = trackgpt.aot:main",
        ],
    },
)
