#!/bin/sh
# The official image's 20-envsubst-on-templates.sh: every variable defined in the environment is substituted,
# nothing else (nginx's own $variables stay), each <name>.template becoming conf.d/<name>.
set -eu
template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
if [ "${1:-}" = nginx ] && [ -d "$template_dir" ]; then
    defined_envs=$(printf '${%s} ' $(awk 'END { for (name in ENVIRON) { print name } }' < /dev/null))
    for template in $(find "$template_dir" -follow -type f -name "*$suffix"); do
        relative="${template#"$template_dir/"}"
        output="$output_dir/${relative%"$suffix"}"
        mkdir -p "$(dirname "$output")"
        echo "$0: running envsubst on $template to $output"
        envsubst "$defined_envs" < "$template" > "$output"
    done
fi
exec "$@"
