// Prisma 7's CLI configuration: only `prisma generate` runs (no migrations, no introspection).
import { defineConfig } from 'prisma/config';

export default defineConfig({ schema: 'prisma/schema.prisma' });
