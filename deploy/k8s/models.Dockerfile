# The model repository as an image, for the init container of deploy/k8s/base/triton.yaml:
#   docker build -f deploy/k8s/models.Dockerfile -t <registry>/fakelens-models:0.4.0 .
FROM busybox:1.37.0
COPY model_repository/ /models/
USER 1000
