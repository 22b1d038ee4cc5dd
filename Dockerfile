FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY batchgate ./batchgate
COPY workers ./workers
RUN pip install --no-cache-dir . && useradd --create-home batchgate && mkdir -p /data && chown batchgate /data
USER batchgate
ENV BATCHGATE_DATA_DIR=/data
EXPOSE 8000
CMD ["batchgate", "serve", "--host", "0.0.0.0", "--port", "8000"]
