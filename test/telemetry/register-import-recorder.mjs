import { register } from 'node:module';

register('./import-recorder.mjs', import.meta.url);
