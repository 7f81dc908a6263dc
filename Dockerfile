# QaaS: the GraphQL API and its reconciler, as deployed by manifests/qaas.
#   docker build -t REGISTRY/qaas:TAG .

# The browser assets, from the same package-lock.json as `./dev setup`. Only the dashboard's
# graphql-ws client is kept: production (QAAS_PRODUCTION=true) serves no GraphiQL.
FROM node:20-bookworm-slim AS assets
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric user that matches runAsUser in manifests/qaas: Kubernetes can check
# runAsNonRoot only against a numeric id.
RUN groupadd --system --gid 10001 qaas \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin qaas

WORKDIR /app

# The dependencies in a layer of their own, rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Of node_modules, only the file /dashboard loads (schema/graphiql.py: ASSETS).
COPY --from=assets /web/node_modules/graphql-ws/umd/graphql-ws.min.js \
     ./node_modules/graphql-ws/umd/graphql-ws.min.js
COPY alembic.ini ./
COPY migrations ./migrations
COPY schema ./schema
COPY app ./app

# Editable on purpose: app/store/migrate.py finds the Alembic scripts at <project root>/migrations,
# next to the `app` package. A regular install would move `app` into site-packages, where there
# is no migrations/; an editable one keeps importing it from /app, beside /app/migrations.
# Bytecode is compiled now because the root filesystem is read-only at run time.
RUN pip install --no-cache-dir --no-deps -e . \
 && python -m compileall -q app schema migrations

USER 10001:10001
EXPOSE 8000
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (manifests/qaas/base/deployment.yaml).
ENTRYPOINT ["qaas"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
