// Progressive enhancement only: every page works without this.
import { initAll } from '/assets/nhsuk-frontend/nhsuk-frontend.min.js';

initAll();
