#!/bin/sh
# Runs inside the derived image after nginx and root/ are in place.
set -e
systemctl enable nginx.service
# The default page nginx ships is replaced by root/var/www/html/index.html.
rm -f /var/www/html/index.nginx-debian.html
