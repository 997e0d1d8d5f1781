import fs from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../core/errors.js';
import { ARTIFACT_KINDS, type SynapseArtifact } from './synapse-artifacts.js';

/** Reads the artifacts of a Synapse Git folder (`<dir>/<kind>/<name>.json` = `{ name, properties }`). */
export async function readArtifacts(dir: string): Promise<SynapseArtifact[]> {
  const out: SynapseArtifact[] = [];
  for (const kind of ARTIFACT_KINDS) {
    const names = (await fs.readdir(path.join(dir, kind)).catch(() => [] as string[]))
      .filter((n) => n.endsWith('.json'))
      .sort();
    for (const file of names) {
      const full = path.join(dir, kind, file);
      let parsed: { name?: unknown; properties?: unknown };
      try {
        parsed = JSON.parse(await fs.readFile(full, 'utf8'));
      } catch (error) {
        throw new UsageError(
          `Artifact \`${full}\` is not valid JSON (${(error as Error).message}); run \`ferry export synapse\` again.`,
        );
      }
      if (typeof parsed.name !== 'string' || !parsed.properties || typeof parsed.properties !== 'object') {
        throw new UsageError(
          `Artifact \`${full}\` lacks \`name\` or \`properties\`; run \`ferry export synapse\` again.`,
        );
      }
      out.push({ kind, name: parsed.name, properties: parsed.properties as Record<string, unknown> });
    }
  }
  if (out.length === 0)
    throw new UsageError(`No artifacts under \`${dir}\`; run \`ferry export synapse\` first or pass --from <dir>.`);
  return out;
}
