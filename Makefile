# Two commands matter: `make demo` and `make test`. Each sets the machine up first
# (idempotent: a second run with nothing changed takes seconds).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# DDS stays on this machine for everything started from this Makefile; each target
# family gets its own domain so parallel runs do not cross-talk. On a robot, source
# scripts/env.sh yourself and keep your own ROS_AUTOMATIC_DISCOVERY_RANGE.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ENV := source scripts/env.sh &&
OUT ?= out
RESULTS ?= results

.PHONY: help setup build demo test launch-test lint bench clean train-embedded

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup:  ## install Debian packages, the venv and build the workspace (idempotent)
	@bash scripts/setup.sh

build: setup  ## (re)build the colcon workspace
	@bash scripts/setup.sh --force-build

demo: setup  ## run the graph on a sample clip; writes overlays and a summary to $(OUT)/demo
	@# the tracker's compiled image encoder for this machine: built once (about a minute on 2 cores), then cached
	@$(ENV) { trackgpt-compile || echo "make demo: no compiled encoder; the tracker runs the traced one"; } && \
	  ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-41} python -m perception_bringup.demo --out $(OUT)/demo

test: setup  ## run the whole test suite (unit + multi-process ROS tests)
	@$(ENV) PERCEPTION_REQUIRE_ROS=1 ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-42} python -m pytest

launch-test:  ## the launch_testing test of launch/robot.launch.py (needs ROS 2 launch_testing: the Docker image)
	@if [ -x .venv/bin/python ]; then source scripts/env.sh; fi; \
	  ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-44} python -m launch_testing.launch_test tests/perception_bringup/launch/test_robot_launch.py

lint: setup  ## ruff on all Python code, hadolint on the Dockerfile
	@$(ENV) ruff check src training tests scripts launch && hadolint docker/Dockerfile

bench: setup  ## benchmarks, JSON under $(RESULTS)/
	@$(ENV) ROS_DOMAIN_ID=$${ROS_DOMAIN_ID:-43} bash scripts/bench.sh $(RESULTS)

train-embedded: setup  ## regenerate the worlds and retrain the shipped embedded models from scratch (hours on CPU)
	@$(ENV) bash scripts/train_embedded.sh

clean:  ## remove build products (keeps the venv)
	rm -rf build install log
