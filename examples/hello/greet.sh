#!/bin/sh
echo "Hello from an image built by rbuild @VERSION@, running as $(id -un) in $(pwd)"
