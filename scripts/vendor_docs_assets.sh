#!/usr/bin/env bash
# Vendors the API docs' browser assets into service/static/vendor, so /docs (Swagger UI) and
# /redoc render with no network access. Pinned versions from the npm registry; rerun after
# changing a version (and update service/docs.py, which names the folders):
#   scripts/vendor_docs_assets.sh
set -euo pipefail
SWAGGER_UI=5.35.0
REDOC=2.5.4

cd "$(dirname "$0")/.."
target=service/static/vendor
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

(cd "$scratch" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "redoc@$REDOC" >/dev/null)
rm -rf "$target"
mkdir -p "$target/swagger-ui-dist-$SWAGGER_UI" "$target/redoc-$REDOC"

tar -xzf "$scratch/swagger-ui-dist-$SWAGGER_UI.tgz" -C "$scratch"
for file in swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
  cp "$scratch/package/$file" "$target/swagger-ui-dist-$SWAGGER_UI/"
done
rm -rf "$scratch/package"

tar -xzf "$scratch/redoc-$REDOC.tgz" -C "$scratch"
cp "$scratch/package/bundles/redoc.standalone.js" \
  "$scratch/package/bundles/redoc.standalone.js.LICENSE.txt" \
  "$scratch/package/LICENSE" "$target/redoc-$REDOC/"
# The one thing the bundle loads from the internet is Redocly's logo beside "API docs by
# Redocly" in the menu; offline that request fails with a console error, so the logo becomes
# an empty inline image.
sed -i 's|https://cdn.redoc.ly/redoc/logo-mini.svg|data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E|' \
  "$target/redoc-$REDOC/redoc.standalone.js"
if grep -q "cdn.redoc.ly" "$target/redoc-$REDOC/redoc.standalone.js"; then
  echo "redoc.standalone.js still refers to cdn.redoc.ly" >&2
  exit 1
fi
